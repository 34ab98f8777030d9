"""The spec's `dedupe` (DESIGN.md §5): duplicate keys across a whole table, in one streaming pass.

    dedupe:
      users: {key: [email], keep: first}      # first (default) | last | reject | fix

A row's key is the tuple of its `key` columns; a key with a NULL in any of them is never a
duplicate. The step remembers every key it has let through, so the batches of a table must pass
through one step once each, in read order (the pipeline's one transform task per table does).

What each policy can promise in one pass, where a row already handed on cannot be recalled:
- `first`: the first copy in read order is kept; every later copy is a reject.
- `last`: inside a batch the last copy is kept and the earlier ones are rejects; a copy of a key
  that an earlier batch let through is a reject (that earlier row is on its way to the target).
- `reject`: every copy inside a batch is a reject, and so is every later copy; but a first copy
  that an earlier batch let through stays (it cannot be recalled).
- `fix`: later copies are kept, the key's first string column suffixed `-2`, `-3`, … (the copy's
  number for that key; a number is skipped when the suffixed key is taken already).
With `againstTarget: true` the step first learns the keys already in the target table (the run
reads them once, before the table's first batch), so a row whose key is there is a duplicate too;
after a resume, that includes the keys this run committed before it stopped.
A reject has rule `duplicate`, the key's columns as column (`a,b` for several), the key as value
(its values joined by `,`) and the message `Duplicate key in {table}.{columns}: {value}`.

Memory: a key is remembered as a 64-bit hash in `HashSet` — 8 bytes a slot, at most 65 % full, so
10M distinct keys fit in 2^24 slots = 128 MiB; growing to it from 2^23 frees the old table first
and needs the new one plus the 5.5M hashes it moves (measured over 10M distinct keys: peak RSS
+250 MiB, bench/dedupe_memory.py). A later key with the hash of an earlier, different key would be taken for a
duplicate: with 64 bits the chance is about n²/2^65 — 3·10⁻⁶ over 10M distinct keys.

Keys are hashed by `service.core.hashing.hash_keys`. Everything is vectorized but two loops: hashing keys longer than 64 bytes (blake2b),
and the rows a policy rejects or fixes. New hashes are written into the table by numpy's fancy
indexing (no Arrow kernel writes into existing memory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from service.core.errors import InvalidSpec
from service.core.hashing import ONE, U64, ZERO, arange, has_text, hash_keys, is_string, u
from service.quality.rows import Rows, flags

Keep = Literal["first", "last", "reject", "fix"]
KEEP: tuple[Keep, ...] = ("first", "last", "reject", "fix")
_OPTIONS = ("key", "keep", "againstTarget")
_RULE = "duplicate"


def compile_dedupe(table: str, spec: Mapping[str, object] | None, *, expected_keys: int = 0) -> Dedupe | None:
    """The step that finds duplicate keys in `table` (the spec's `dedupe.<table>` entry:
    `{key: [column, …], keep: first | last | reject | fix, againstTarget: false}`), or None when
    there is no entry.

    Raises InvalidSpec listing every problem of the entry at once; key columns the data does not
    have (or that cannot be a key) are raised, as InvalidSpec too, by the step at the first batch.
    The step is stateful: give it each batch of the table once, in read order, one at a time."""
    if not spec:
        return None
    path = f"dedupe.{table}"
    if not isinstance(spec, Mapping):
        raise InvalidSpec([f"{path} must be a mapping like {{key: [column, …], keep: first}}"])
    problems = [f"{path}.{name} is not an option of dedupe (use {' or '.join(_OPTIONS)})"
                for name in spec if name not in _OPTIONS]
    key = _key_columns(spec.get("key"), f"{path}.key", problems)
    keep = spec.get("keep", "first")
    if keep not in KEEP:
        problems.append(f"{path}.keep must be one of {', '.join(KEEP)}, not {keep!r}")
    against = spec.get("againstTarget", False)
    if not isinstance(against, bool):
        problems.append(f"{path}.againstTarget must be true or false, not {against!r}")
    if problems:
        raise InvalidSpec(problems)
    return Dedupe(table, key, cast(Keep, keep), expected_keys=expected_keys, against_target=bool(against))


def _key_columns(raw: object, path: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        problems.append(f"{path} is required: the column, or list of columns, that makes a row's key")
        return ()
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list | tuple) or not names:
        problems.append(f"{path} must be a column name or a non-empty list of column names")
        return ()
    found = len(problems)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            problems.append(f"{path}[{i}] must be a column name, not {name!r}")
        elif names.index(name) != i:
            problems.append(f"{path} names column {name!r} twice")
    return tuple(names) if len(problems) == found else ()


class Dedupe:
    """One table's duplicate detection as a quality step (`Rows -> Rows`); the module's doc says
    what each `keep` policy guarantees."""

    def __init__(self, table: str, key: Sequence[str], keep: Keep = "first", *, expected_keys: int = 0,
                 against_target: bool = False) -> None:
        """`expected_keys` (e.g. the source's row count, if known) sizes the table up front, which
        saves growing it — at most 2^24 slots (128 MiB) that way; it grows beyond as needed.
        `against_target`: the run seeds the step with the keys already in the target (`seed`)."""
        self.table = table
        self.against_target = against_target
        self.key = tuple(key)
        self.keep: Keep = keep
        self.columns = ",".join(self.key)
        self._seen = HashSet()
        self._seen.reserve(min(expected_keys, int(_MAX_LOAD * (1 << 24))))
        self._copies: dict[int, int] = {}  # fix: a key's last copy number, for keys with copies
        self._checked: pa.Schema | None = None
        self._suffixed = 0  # fix: the position in `key` of the column that takes the suffix

    @property
    def distinct_keys(self) -> int:
        """How many different keys the step has let through."""
        return len(self._seen)

    def seed(self, data: pa.RecordBatch, where: str) -> None:
        """Remember the keys of rows already in the target (`where` names it in errors): a row of
        the run with one of them is a duplicate, whatever the policy (those rows stay)."""
        missing = [k for k in self.key if k not in data.schema.names]
        if missing:
            raise InvalidSpec([f"dedupe.{self.table}.againstTarget: {where} has no column "
                               f"{', '.join(map(repr, missing))} (it has {', '.join(data.schema.names)})"])
        hashes = hash_keys([data.column(k) for k in self.key])
        hashes = pc.unique(hashes.drop_null() if hashes.null_count else hashes)
        if len(hashes):
            self._seen.add(hashes)

    def __call__(self, rows: Rows) -> Rows:
        self._check(rows.data.schema)
        if rows.data.num_rows == 0:
            return rows
        hashes = hash_keys([rows.data.column(k) for k in self.key])
        if hashes.null_count == len(hashes):
            return rows
        self._seen.reserve(len(hashes) - hashes.null_count)
        found, slots = self._seen.probe(hashes)
        if hashes.null_count:
            found = pc.and_(found, pc.is_valid(hashes))
        earlier, later = _copies_in_batch(hashes)
        new = pc.and_(pc.is_valid(hashes), pc.invert(found))
        if earlier is not None:
            new = pc.and_(new, pc.invert(earlier))
        self._seen.insert(hashes.filter(new), slots.filter(new))
        if self.keep == "fix":
            return self._fix(rows, hashes, found if earlier is None else pc.or_(found, earlier))
        if earlier is None or later is None:
            return self._reject(rows, found)
        copies = earlier if self.keep == "first" else later if self.keep == "last" else pc.or_(earlier, later)
        return self._reject(rows, pc.or_(found, copies))

    def _check(self, schema: pa.Schema) -> None:
        """The key's columns exist and can be keys: checked at the first batch (and again only if
        the columns change). Raises InvalidSpec listing every problem."""
        if self._checked is not None and self._checked.equals(schema):
            return
        path = f"dedupe.{self.table}"
        problems: list[str] = []
        for name in self.key:
            index = schema.get_field_index(name)
            if index < 0:
                problems.append(f"{path}.key: table {self.table} has no column {name!r} "
                                f"(it has {', '.join(schema.names) or 'no columns'})")
            elif not has_text(schema.field(index).type):
                problems.append(f"{path}.key: column {name!r} of type {schema.field(index).type} cannot be a key")
        if self.keep == "fix":
            strings = [i for i, k in enumerate(self.key) if k in schema.names and is_string(schema.field(k).type)]
            if strings:
                self._suffixed = strings[0]
            elif not problems:
                problems.append(f"{path}.keep: fix suffixes the key's first string column, and none of "
                                f"{', '.join(self.key)} is a string")
        if problems:
            raise InvalidSpec(problems)
        self._checked = schema

    def _reject(self, rows: Rows, bad: pa.Array) -> Rows:
        if not pc.any(bad).as_py():
            return rows
        if len(self.key) == 1:
            values = rows.data.column(self.key[0])
        else:
            text = [self._text(rows.data, i) for i in pc.indices_nonzero(bad).to_pylist()]
            values = pc.replace_with_mask(pa.nulls(rows.data.num_rows, pa.string()), bad, pa.array(text, pa.string()))
        where = f"{self.table}.{self.columns}"
        return rows.reject(bad, self.columns, _RULE, lambda value: f"Duplicate key in {where}: {value}", values)

    def _text(self, data: pa.RecordBatch, i: int) -> str:
        return ",".join(str(data.column(k)[i].as_py()) for k in self.key)

    def _fix(self, rows: Rows, hashes: pa.Array, copies: pa.Array) -> Rows:
        """Each copy's suffix column becomes `value-<n>`: n counts the key's copies, skipping any
        number whose key is taken. The new keys are remembered too."""
        if not pc.any(copies).as_py():
            return rows
        data = rows.data
        indices = pc.indices_nonzero(copies)
        picked = [data.column(k).take(indices) for k in self.key]
        base = [str(v) for v in picked[self._suffixed].to_pylist()]
        of = hashes.take(indices).to_pylist()
        number: list[int] = []
        for h in of:  # in row order: the first copy of a key gets -2, the next -3, …
            number.append(self._copies.get(h, 1) + 1)
            self._copies[h] = number[-1]
        pending = list(range(len(base)))
        while pending:  # again for the few whose suffixed key is taken
            text = [f"{base[j]}-{number[j]}" for j in pending]
            candidate = [column.take(pending) for column in picked]
            candidate[self._suffixed] = pa.array(text, picked[self._suffixed].type)
            taken = self._seen.add(hash_keys(candidate))
            picked[self._suffixed] = pc.replace_with_mask(
                picked[self._suffixed], flags(len(base), pending), candidate[self._suffixed])
            pending = [pending[i] for i in pc.indices_nonzero(taken).to_pylist()]
            for j in pending:
                number[j] = self._copies[of[j]] = self._copies[of[j]] + 1
        name = self.key[self._suffixed]
        index = data.schema.get_field_index(name)
        fixed = pc.replace_with_mask(data.column(index), copies, picked[self._suffixed])
        return rows.with_data(data.set_column(index, data.schema.field(index), fixed))


def _copies_in_batch(hashes: pa.Array) -> tuple[pa.Array | None, pa.Array | None]:
    """Per row, (an earlier row of the batch has its key, a later row has it); (None, None) when
    the batch's keys are all different — the common case, found with one counting pass."""
    valid = len(hashes) - hashes.null_count
    if valid < 2 or pc.count_distinct(hashes).as_py() == valid:
        return None, None
    order = pc.cast(pc.sort_indices(hashes), pa.int64())  # stable: copies stay in row order; nulls last
    ordered = hashes.take(order)
    same = pc.fill_null(pc.equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1)), False)
    no = pa.array([False])
    earlier = pc.scatter(pa.concat_arrays([no, same]), order)  # back in row order
    later = pc.scatter(pa.concat_arrays([same, no]), order)
    return earlier, later


# --- the set of hashes ----------------------------------------------------------------------------

_MAX_LOAD = 0.65
_VECTOR_MIN = 64  # hashes still probing below this go on in Python: cheaper than another round
_VECTOR_ROUNDS = 32  # … and so do those still probing after this many rounds (a freak cluster)
_DIGIT = 12  # bits a pass of the radix sort that orders the hashes when the table grows
_REGION = 1 << 16  # slots laid out a piece at a time when the table grows (small pieces reuse warm memory)


class HashSet:
    """A set of nonzero 64-bit hashes: open addressing with linear probing in one zeroed
    `bytearray` (0 marks an empty slot; a hash's first slot is its top bits), doubled when 65 %
    full — 8 bytes a slot, so 12.3 to 24.6 bytes a hash.

    Lookups are vectorized: one `take` round per probe step, over the hashes still probing. New
    hashes are written a batch's at once by numpy (`table[slots] = hashes`: no Arrow kernel
    writes into existing memory); a vectorized check then finds
    those that lost their slot to another hash of the batch, and they probe on. Growing is
    vectorized: the hashes, radix-sorted by first slot, go to `slot_i = max(first_i,
    slot_(i-1) + 1)` — the table linear probing would build — laid out a region at a time."""

    def __init__(self, bits: int = 16) -> None:
        self._count = 0
        self._allocate(bits)

    def _allocate(self, bits: int) -> None:
        self._bits = bits
        self._memory = bytearray(8 << bits)
        self._slots = memoryview(self._memory).cast("Q")
        self._array = np.frombuffer(self._memory, np.uint64)
        self._view = pa.Array.from_buffers(U64, 1 << bits, [None, pa.py_buffer(self._memory)])

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """The table's size in bytes."""
        return len(self._memory)

    def reserve(self, more: int) -> None:
        """Grow now, if need be, so that `more` hashes can be inserted without growing."""
        bits = self._bits
        while self._count + more > _MAX_LOAD * (1 << bits):
            bits += 1
        if bits != self._bits:
            self._grow(bits)

    def probe(self, hashes: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(found, slot) per hash: whether it is in the set and, when not, the empty slot where it
        would go (until the next insert). Both are unspecified for null hashes."""
        if hashes.null_count:
            hashes = pc.fill_null(hashes, ZERO)
        return self._probe(hashes, pc.shift_right(hashes, u(64 - self._bits)))

    def insert(self, hashes: pa.Array, slots: pa.Array) -> None:
        """Add distinct `hashes` that `probe` did not find, at the `slots` it gave (after a
        `reserve` for them, with no insert in between)."""
        if not len(hashes):
            return
        self._array[np.frombuffer(_values(slots), np.uint64)] = np.frombuffer(_values(hashes), np.uint64)
        self._count += len(hashes)
        lost = pc.not_equal(self._view.take(slots), hashes)  # to another hash wanting the same slot
        if pc.any(lost).as_py():
            table, mask = self._slots, len(self._slots) - 1
            for value, at in zip(hashes.filter(lost).to_pylist(), slots.filter(lost).to_pylist()):
                while table[at]:
                    at = (at + 1) & mask
                table[at] = value

    def add(self, hashes: pa.Array) -> pa.Array:
        """Add distinct, nonzero `hashes`; returns for each whether it was in the set already."""
        self.reserve(len(hashes))
        found, slots = self.probe(hashes)
        new = pc.invert(found)
        self.insert(hashes.filter(new), slots.filter(new))
        return found

    def _grow(self, bits: int) -> None:
        """Move every hash into a new table of 2^bits slots, vectorized and a piece at a time, so
        that the memory it takes at once stays near the old table plus the new one."""
        count = self._count
        old = self._view
        parts = [part.filter(pc.not_equal(part, ZERO))
                 for part in (old.slice(i, _REGION) for i in range(0, len(old), _REGION))]
        del old, self._view, self._slots, self._array, self._memory  # the old table goes before the new one comes
        hashes = pa.concat_arrays(parts)
        del parts
        for low in range(64 - bits, 64, _DIGIT):  # LSD radix sort by first slot: stable counting sorts
            digit = pc.cast(pc.shift_right(hashes, u(low)), pa.uint16(), safe=False)  # keeps the low bits
            width = min(_DIGIT, 64 - low)
            hashes = hashes.take(pc.sort_indices(pc.bit_wise_and(digit, pa.scalar((1 << width) - 1, pa.uint16()))))
            del digit
        # Arrow keeps freed memory for reuse; the table is not Arrow's: give it back to the system first.
        pa.default_memory_pool().release_unused()
        self._allocate(bits)
        self._count = count
        if count:
            self._lay_out(hashes)
        del hashes
        pa.default_memory_pool().release_unused()

    def _lay_out(self, hashes: pa.Array) -> None:
        """Write `hashes`, sorted by first slot, into the empty table: each goes to
        `max(its first slot, the previous one's slot + 1)`, as linear probing would put it."""
        size = len(self._slots)
        shift = u(64 - self._bits)
        last = -1  # the slot of the last hash written, carried from piece to piece
        for start in range(0, len(hashes), _REGION):
            part = hashes.slice(start, _REGION)
            rank = arange(len(part))
            # slot_r = max(first_r, slot_(r-1) + 1) = r + max(last + 1, max over q <= r of first_q - q)
            first = pc.cast(pc.shift_right(part, shift), pa.int64())
            slot = pc.add(pc.max_element_wise(pc.cumulative_max(pc.subtract(first, rank)), last + 1), rank)
            last = slot[-1].as_py()
            inside = pc.less(slot, size)
            wrapped = None if pc.all(inside).as_py() else part.filter(pc.invert(inside))
            if wrapped is not None:
                part, slot = part.filter(inside), slot.filter(inside)
            if len(part):
                begin, end = slot[0].as_py(), slot[-1].as_py() + 1
                laid = pc.scatter(part, pc.subtract(slot, begin), max_index=end - begin - 1)
                self._slots[begin:end] = _values(pc.coalesce(laid, ZERO))
            if wrapped is not None:  # past the last slot: these wrap around to the first ones
                self._wrap(wrapped)

    def _wrap(self, hashes: pa.Array) -> None:
        table, mask = self._slots, len(self._slots) - 1
        for value in hashes.to_pylist():
            at = 0
            while table[at]:
                at = (at + 1) & mask
            table[at] = value

    def _probe(self, hashes: pa.Array, start: pa.Array) -> tuple[pa.Array, pa.Array]:
        n = len(hashes)
        if n == 0:
            return pa.array([], pa.bool_()), pa.array([], U64)
        mask = len(self._slots) - 1
        at, slot, h = arange(n), start, hashes
        settled: list[tuple[pa.Array, pa.Array, pa.Array]] = []  # (row, slot, found)
        for _ in range(_VECTOR_ROUNDS):
            if len(h) < _VECTOR_MIN:
                break
            seen = self._view.take(slot)
            found = pc.equal(seen, h)
            stop = pc.or_(found, pc.equal(seen, ZERO))
            if pc.all(stop).as_py():
                if not settled:
                    return found, slot
                settled.append((at, slot, found))
                h = h.slice(0, 0)
                break
            settled.append((at.filter(stop), slot.filter(stop), found.filter(stop)))
            go = pc.invert(stop)
            at, h = at.filter(go), h.filter(go)
            slot = pc.bit_wise_and(pc.add(slot.filter(go), ONE), u(mask))
        if len(h):
            table = self._slots
            slots_left: list[int] = []
            found_left: list[bool] = []
            for value, s in zip(h.to_pylist(), slot.to_pylist()):
                while table[s] and table[s] != value:
                    s = (s + 1) & mask
                slots_left.append(s)
                found_left.append(table[s] == value)
            settled.append((at, pa.array(slots_left, U64), pa.array(found_left, pa.bool_())))
        rows = pa.concat_arrays([part[0] for part in settled])
        return (pc.scatter(pa.concat_arrays([part[2] for part in settled]), rows),
                pc.scatter(pa.concat_arrays([part[1] for part in settled]), rows))


def _values(a: pa.Array) -> memoryview:
    """The values of a uint64 array without nulls: a memoryview of its buffer (no copy)."""
    return memoryview(a.buffers()[1]).cast("Q")[a.offset:a.offset + len(a)]
