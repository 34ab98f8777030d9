"""`migrator demo`: demo data for `make run` — users, products and orders as CSV files in
`$MIGRATOR_DATA_DIR/demo/`, with a few deliberate quality problems (a non-numeric age, a price
that is not a number, a missing quantity in a NOT NULL column) so the rejects have something to show."""

from __future__ import annotations

import csv
import random
from pathlib import Path

COUNTRIES = ["US", "DE", "FR", "GB", "ES", "IT", "NL", "PL"]
WORDS = ["alpha", "beta", "gamma", "delta", "kappa", "lambda", "sigma", "omega"]


def write_demo(folder: Path, *, users: int = 20_000, products: int = 5_000, orders: int = 30_000,
               seed: int = 7) -> dict[str, int]:
    """Write the three CSV files (deterministic for a seed); returns rows per table."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "users.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "email", "name", "age", "country", "score", "active", "created_at", "bio"])
        for i in range(1, users + 1):
            age: object = rnd.randint(18, 90)
            if i in (12_345, 17_001):
                age = "unknown"  # deliberate: not an integer
            bio = rnd.choice(["", 'Likes "quotes", commas', "Zürich → Köln\nsecond line", None])
            w.writerow([i, f"user{i}@example.com" if i != 1234 else "test@example.com", f"User {i}", age,
                        rnd.choice(COUNTRIES), f"{rnd.uniform(0, 100):.3f}", rnd.random() < 0.7,
                        f"2025-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d} {rnd.randint(0, 23):02d}:00:00",
                        bio if bio is not None else ""])
    with open(folder / "products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "sku", "name", "price", "stock"])
        for i in range(1, products + 1):
            price: object = f"{rnd.uniform(1, 500):.2f}"
            if i == 4_321:
                price = "N/A"  # deliberate: not a number
            w.writerow([i, f"SKU-{i:06d}", f"{rnd.choice(WORDS).title()} {rnd.choice(WORDS)}", price,
                        rnd.randint(0, 1000)])
    with open(folder / "orders.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "user_id", "product_id", "quantity", "ordered_at"])
        for i in range(1, orders + 1):
            qty: object = rnd.randint(1, 10)
            if i in (25_000,):
                qty = "many"  # deliberate: not an integer
            w.writerow([i, rnd.randint(1, users), rnd.randint(1, products), qty,
                        f"2026-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:15:00"])
    return {"users": users, "products": products, "orders": orders}
