"""A multi-table PostgreSQL schema with foreign keys, a self-reference and a cycle — users,
products, orders, order_items, departments ⇄ employees (employee → manager) — for plan and
verification tests."""

from __future__ import annotations

from tests.support import pg

SCHEMA = """
CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL UNIQUE, name text);
CREATE TABLE products (id integer PRIMARY KEY, sku text NOT NULL, price numeric(10,2), tags jsonb);
CREATE INDEX products_sku ON products (sku);
CREATE TABLE orders (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users (id),
                     created timestamptz NOT NULL);
CREATE TABLE order_items (order_id integer REFERENCES orders (id), product_id integer REFERENCES products (id),
                          qty integer NOT NULL, PRIMARY KEY (order_id, product_id));
CREATE TABLE departments (id integer PRIMARY KEY, name text NOT NULL, head_id integer);
CREATE TABLE employees (id integer PRIMARY KEY, name text NOT NULL, manager_id integer REFERENCES employees (id),
                        department_id integer REFERENCES departments (id));
ALTER TABLE departments ADD CONSTRAINT departments_head_fkey FOREIGN KEY (head_id) REFERENCES employees (id)
  DEFERRABLE INITIALLY DEFERRED;
"""
DATA = """
INSERT INTO users SELECT i, 'user' || i || '@example.com', 'User ' || i FROM generate_series(1, 300) i;
INSERT INTO products SELECT i, 'SKU-' || i, (i * 1.25)::numeric(10,2),
                            jsonb_build_object('colour', 'red', 'size', i % 5) FROM generate_series(1, 80) i;
INSERT INTO orders SELECT i, 1 + i % 300, timestamptz '2024-01-01 00:00+00' + i * interval '1 hour'
                   FROM generate_series(1, 1000) i;
INSERT INTO order_items SELECT o, 1 + (o * 7 + k) % 80, 1 + k FROM generate_series(1, 1000) o, generate_series(0, 2) k;
INSERT INTO departments SELECT i, 'Dept ' || i, NULL FROM generate_series(1, 5) i;
INSERT INTO employees SELECT i, 'Emp ' || i, CASE WHEN i > 1 THEN 1 + (i - 2) / 4 END, 1 + i % 5
                      FROM generate_series(1, 60) i;
UPDATE departments SET head_id = id;
"""
TABLES = ["users", "products", "orders", "order_items", "departments", "employees"]
COUNTS = {"users": 300, "products": 80, "orders": 1000, "order_items": 3000, "departments": 5, "employees": 60}


async def create_shop(dsn: str) -> None:
    await pg.execute(dsn, SCHEMA, DATA)
