"""The order tables load in, from the source's foreign keys (DESIGN.md §3 `plan.order`).

Parents come before their children: a table loads after every table its foreign keys reference
(among the tables of the migration). Tables that reference each other in a cycle — directly
(a self-reference, employee → manager) or through others (departments ⇄ employees) — cannot all
come first: they load one after the other in their listed order. That is safe because a run
never creates a foreign key before the load ends: the keys between the tables it created are
added once every table is loaded, then validated (PostgreSQL targets). Into existing target
tables that already have such keys, a cycle needs them DEFERRABLE, or loaded without them.

`levels` groups the order: the tables of one level depend only on earlier levels, so they may
load at the same time (spec `parallelTables`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service.core.schema import TableSchema


@dataclass(frozen=True)
class LoadOrder:
    order: list[str]
    levels: list[list[str]]
    depends_on: dict[str, list[str]]  # per table, the other migrated tables it references
    notes: list[str] = field(default_factory=list)  # self-references, cycles, parents left out


def load_order(schemas: Sequence[TableSchema]) -> LoadOrder:
    """The load order of `schemas` (given in the listed order, which breaks ties)."""
    names = [s.name for s in schemas]
    position = {n: i for i, n in enumerate(names)}
    parents: dict[str, list[str]] = {n: [] for n in names}
    notes: list[str] = []
    for s in schemas:
        for key in s.foreign_keys:
            link = f"{s.name}.{','.join(key.columns)} → {key.table}"
            if key.table == s.name:
                notes.append(f"{link}: a self-reference; the table loads whole, then the key is added and validated")
            elif key.table not in position:
                notes.append(f"{link}: {key.table} is not part of this migration; the key is added only if the "
                             "target has that table")
            elif key.table not in parents[s.name]:
                parents[s.name].append(key.table)
    components = _strongly_connected(names, parents)
    component_of = {n: i for i, members in enumerate(components) for n in members}
    for members in components:
        if len(members) > 1:
            ordered = sorted(members, key=position.__getitem__)
            notes.append(f"cycle {' ⇄ '.join(ordered)}: these tables reference each other; they load in the order "
                         f"{', '.join(ordered)}, and their foreign keys are added after all of them are loaded")
    # Levels over the components: one more than the deepest component referenced.
    depth: dict[int, int] = {}

    def level(c: int) -> int:  # the components form a DAG: the recursion ends
        if c not in depth:
            ups = {component_of[p] for n in components[c] for p in parents[n]} - {c}
            depth[c] = 1 + max((level(u) for u in ups), default=-1)
        return depth[c]

    levels: list[list[str]] = []
    for c in range(len(components)):
        d = level(c)
        while len(levels) <= d:
            levels.append([])
        levels[d].extend(components[c])
    levels = [sorted(group, key=position.__getitem__) for group in levels if group]
    return LoadOrder([n for group in levels for n in group], levels, parents, notes)


def _strongly_connected(names: list[str], parents: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of the reference graph (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, iter(parents[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(parents[nxt])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                out.append(members)
    return out
