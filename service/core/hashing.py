"""64-bit hashes of values and rows, vectorized with pyarrow's arithmetic kernels (pyarrow has no
public hash kernel): duplicate detection remembers keys by them, verification sums rows by them.

A value is hashed as its bytes — the text of numbers, dates, … — so the same value gives the same
hash in every batch and every process (no seed)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

U64 = pa.uint64()
_LONG = 64  # bytes: longer key texts are hashed by blake2b, in Python


def u(value: int) -> pa.Scalar:
    return pa.scalar(value, U64)


ZERO, ONE = u(0), u(1)
GOLDEN = u(0x9E3779B97F4A7C15)
_C1, _C2 = u(0xBF58476D1CE4E5B9), u(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = u(27), u(30), u(31), u(32)
_EMPTY = pa.scalar(b"", pa.binary())


def hash_keys(columns: Sequence[pa.Array]) -> pa.Array:
    """A nonzero 64-bit hash (uint64) of each row's values of `columns`, null where any is null.

    A value is hashed as its bytes — the text of numbers, dates, …, so the same value gives the
    same hash in every batch, in every process (no seed). The bytes, padded with NULs to whole
    8-byte words, go through a chain `acc = step(acc ^ word)` that starts from the length; `step`
    (multiply by an odd constant, then xor-shift) is a bijection, so two values of one length that
    differ in one word never collide. splitmix64's finalizer mixes the end result, and chains
    the columns of a key."""
    result: pa.Array | None = None
    for column in columns:
        h = hash_bytes(as_bytes(column))
        result = h if result is None else mix(pc.add(pc.multiply(result, GOLDEN), h))
    assert result is not None
    return pc.if_else(pc.equal(result, ZERO), ONE, result)  # 0 marks an empty slot of HashSet


def hash_bytes(values: pa.Array) -> pa.Array:
    n = len(values)
    nulls = pc.is_null(values) if values.null_count else None
    if nulls is not None:
        values = pc.fill_null(values, _EMPTY)
    lengths = pc.binary_length(values)
    longest = pc.max(lengths).as_py() or 0
    long = None
    if longest > _LONG:
        long = pc.greater(lengths, _LONG)
        texts = values.filter(long).to_pylist()
        values = pc.if_else(long, _EMPTY, values)
        lengths = pc.if_else(long, 0, lengths)
        longest = pc.max(lengths).as_py() or 0
    words = max(1, -(-longest // 8))
    # ascii_rpad pads bytes, never decodes them: the binary is only viewed as text for it.
    padded = pc.ascii_rpad(values.view(pa.string()), words * 8, "\0")
    assert padded.offset == 0
    data = pa.Array.from_buffers(U64, n * words, [None, padded.buffers()[2]])
    acc = pc.multiply(pc.cast(lengths, U64), GOLDEN)
    # A value's own words only: the padding up to the batch's longest value must not change its
    # hash (else one key would hash differently in batches of different longest values).
    own = pc.divide(pc.add(lengths, 7), 8)
    shortest = pc.min(own).as_py() or 0
    for j in range(words):
        word = data if words == 1 else data.take(pc.add(pc.multiply(arange(n), words), j))
        step = pc.multiply(pc.bit_wise_xor(acc, word), _C1)
        step = pc.bit_wise_xor(step, pc.shift_right(step, _S32))
        acc = step if j < shortest else pc.if_else(pc.greater(own, j), step, acc)
    h = mix(acc)
    if long is not None:
        digests = [int.from_bytes(hashlib.blake2b(t, digest_size=8).digest(), "little") for t in texts]
        h = pc.replace_with_mask(h, long, pa.array(digests, U64))
    if nulls is not None:
        h = pc.if_else(nulls, pa.scalar(None, U64), h)
    return h


def mix(x: pa.Array) -> pa.Array:
    """splitmix64's finalizer: a bijection of uint64 in which each input bit flips each output
    bit with probability ½."""
    x = pc.multiply(pc.bit_wise_xor(x, pc.shift_right(x, _S30)), _C1)
    x = pc.multiply(pc.bit_wise_xor(x, pc.shift_right(x, _S27)), _C2)
    return pc.bit_wise_xor(x, pc.shift_right(x, _S31))


def is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def is_binary(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t))


def has_text(t: pa.DataType) -> bool:
    if is_binary(t) or is_string(t):
        return True
    try:
        pc.cast(pa.array([], t), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False
    return True


def as_bytes(column: pa.Array) -> pa.Array:
    """The column's values as binary: strings' and binaries' own bytes, other values' text."""
    if not (is_string(column.type) or is_binary(column.type)):
        column = pc.cast(column, pa.string())
    return pc.cast(column, pa.binary())


_ARANGE: list[pa.Array] = [pa.array([], pa.int64())]


def arange(n: int) -> pa.Array:
    """int64 [0, 1, …, n-1] (a slice of a cached array)."""
    if len(_ARANGE[0]) < n:
        _ARANGE[0] = pa.array(range(max(n, 2 * len(_ARANGE[0]), 1 << 16)), pa.int64())
    return _ARANGE[0].slice(0, n)
