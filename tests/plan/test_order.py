"""The order tables load in: parents before children, independent tables grouped in levels,
self-references and cycles noted without blocking the load, parents outside the migration noted."""

from __future__ import annotations

from service.core.schema import ForeignKey, TableSchema
from service.plan.order import LoadOrder, load_order


def table(name: str, *parents: str) -> TableSchema:
    """A table with one foreign key `<name>_<parent>_fk (<parent>_id) → <parent>(id)` per parent."""
    keys = tuple(ForeignKey(f"{name}_{p}_fk", (f"{p}_id",), p, ("id",)) for p in parents)
    return TableSchema(name, columns=(), foreign_keys=keys)


def plan(*schemas: TableSchema) -> LoadOrder:
    result = load_order(schemas)
    assert sorted(result.order) == sorted(s.name for s in schemas)  # always a permutation
    assert len(result.order) == len(schemas)
    return result


def test_parents_load_before_their_children_across_several_levels() -> None:
    result = plan(table("order_items", "orders", "products"), table("orders", "users"),
                  table("products"), table("users"))

    assert result.levels == [["products", "users"], ["orders"], ["order_items"]]
    assert result.order == ["products", "users", "orders", "order_items"]
    assert result.notes == []


def test_independent_tables_share_a_level_in_their_listed_order() -> None:
    result = plan(table("c"), table("a"), table("b", "c"), table("d", "a"), table("e"))

    assert result.levels == [["c", "a", "e"], ["b", "d"]]
    assert result.order == ["c", "a", "e", "b", "d"]


def test_depends_on_lists_only_other_migrated_tables_once_each() -> None:
    twice = TableSchema("orders", columns=(), foreign_keys=(
        ForeignKey("bill_to", ("bill_to",), "users", ("id",)),
        ForeignKey("ship_to", ("ship_to",), "users", ("id",)),
        ForeignKey("parent", ("parent_id",), "orders", ("id",)),
        ForeignKey("shop", ("shop_id",), "shops", ("id",)),
    ))
    result = plan(twice, table("users"))

    assert result.depends_on == {"orders": ["users"], "users": []}
    assert result.order == ["users", "orders"]


def test_a_self_reference_is_noted_and_does_not_block_the_table() -> None:
    result = plan(table("employees", "employees"), table("badges", "employees"))

    assert result.levels == [["employees"], ["badges"]]
    assert result.depends_on == {"employees": [], "badges": ["employees"]}
    assert result.notes == ["employees.employees_id → employees: a self-reference; the table loads whole, "
                            "then the key is added and validated"]


def test_a_two_table_cycle_loads_in_listed_order_in_one_level_with_a_note() -> None:
    result = plan(table("employees", "departments"), table("departments", "employees"), table("sites"))

    assert result.levels == [["employees", "departments", "sites"]]
    assert len(result.notes) == 1
    assert result.notes[0].startswith("cycle employees ⇄ departments: ")
    assert "they load in the order employees, departments" in result.notes[0]


def test_a_three_table_cycle_loads_in_listed_order_before_its_children() -> None:
    result = plan(table("report", "b"), table("c", "a"), table("a", "b"), table("b", "c"))

    assert result.levels == [["c", "a", "b"], ["report"]]
    assert result.order == ["c", "a", "b", "report"]
    assert [n.split(":")[0] for n in result.notes] == ["cycle c ⇄ a ⇄ b"]


def test_a_parent_outside_the_migration_is_noted_and_ignored() -> None:
    result = plan(table("orders", "users", "shops"), table("users"))

    assert result.order == ["users", "orders"]
    assert result.depends_on["orders"] == ["users"]
    assert result.notes == ["orders.shops_id → shops: shops is not part of this migration; the key is added "
                            "only if the target has that table"]


def test_a_chain_of_two_thousand_tables_loads_from_its_root() -> None:
    names = [f"t{i}" for i in range(2000)]
    children_first = [table(names[i], *names[i - 1:i]) for i in reversed(range(2000))]

    result = plan(*children_first)

    assert result.order == names
    assert result.levels == [[n] for n in names]


def test_a_chain_listed_root_last_with_a_cycle_in_the_middle() -> None:
    chain = [table("t0"), table("t1", "t0", "t2"), table("t2", "t1"), table("t3", "t2")]

    result = plan(*reversed(chain))

    assert result.levels == [["t0"], ["t2", "t1"], ["t3"]]
    assert result.order == ["t0", "t2", "t1", "t3"]


def test_no_tables_give_an_empty_order() -> None:
    assert plan() == LoadOrder([], [], {}, [])
