"""Where rows end in CSV bytes, by the rules pyarrow's parser reads them with.

A line feed ends a row unless it is inside a quoted field. Counting quotes (odd: inside) is not
enough: a quote that is not at the start of a field (`5" tall`, `12"`) is an ordinary character,
and one such quote would flip every later decision. The rules, per run of k consecutive quotes:

- outside a quoted field, at a field's start (after the delimiter, CR, LF or the file's start):
  the first quote opens the field and the rest are doubled pairs, so odd k toggles the state
  (outside → inside) and even k (`""` is an empty field) leaves it;
- outside, anywhere else: plain characters; the state stays outside;
- inside a quoted field: pairs are escaped quotes; an odd k ends the field (the state is
  outside, and stays so to the next delimiter), an even k leaves it inside.

So each run is one of three maps of {inside, outside}: toggle (field start, odd k), "outside"
(elsewhere, odd k) or identity (even k). The state before any position is then the start state
folded over the runs before it, which numpy computes for a whole chunk at once: after the last
"outside" map, the state is outside toggled by the number of toggles since. The cost is a few
vector passes over the chunk, and nothing per row or per quote in Python.
"""

from __future__ import annotations

import numpy as np

_LF, _CR = 10, 13


class RowEnds:
    """Streams over a file's bytes, chunk after chunk, knowing at every point whether it is inside
    a quoted field. Start it at a row's start."""

    def __init__(self, delimiter: bytes, quote: bytes | None) -> None:
        self.delimiter = delimiter[0]
        self.quote = quote[0] if quote else None
        self.inside = False  # at the end of what was fed (before a pending run of quotes)
        self.last = _LF  # the byte before what comes next
        self._pending = 0  # a run of quotes ending what was fed: the next chunk may continue it
        self._pending_at_start = False  # ... and whether it began at a field's start

    def feed(self, chunk: bytes | memoryview) -> np.ndarray:
        """Offsets just past each line feed in `chunk` that ends a row (chunk follows what was
        fed before)."""
        a = np.frombuffer(chunk, np.uint8)
        if not a.size:
            return np.empty(0, np.int64)
        if self.quote is None:
            return np.flatnonzero(a == _LF) + 1
        quotes = np.flatnonzero(a == self.quote)
        if not quotes.size and not self._pending:
            ends = np.flatnonzero(a == _LF) + 1 if not self.inside else np.empty(0, np.int64)
            self.last = int(a[-1])
            return ends
        first = np.ones(quotes.size, bool)
        first[1:] = np.diff(quotes) != 1
        run_index = np.flatnonzero(first)
        starts = quotes[run_index]
        lengths = np.diff(np.append(run_index, quotes.size))
        before = np.empty(starts.size, np.uint8)
        before[starts > 0] = a[starts[starts > 0] - 1]
        at_start = (before == self.delimiter) | (before == _LF) | (before == _CR)
        if starts.size and starts[0] == 0:
            at_start[0] = self.last in (self.delimiter, _LF, _CR)
        inside = self.inside
        ends_chunk = bool(starts.size) and starts[-1] + lengths[-1] == a.size
        if self._pending:
            if starts.size and starts[0] == 0:  # the run goes on in this chunk
                lengths[0] += self._pending
                at_start[0] = self._pending_at_start
            else:
                inside = self._step(inside, self._pending, self._pending_at_start)
            self._pending = 0
        # A run that ends the chunk may go on in the next one: decide it then.
        if ends_chunk:
            self._pending, self._pending_at_start = int(lengths[-1]), bool(at_start[-1])
            starts, lengths, at_start = starts[:-1], lengths[:-1], at_start[:-1]
        odd = (lengths & 1).astype(bool)
        toggles = (at_start & odd).astype(np.int64)
        outs = ~at_start & odd
        count = np.cumsum(toggles)
        last_out = np.maximum.accumulate(np.where(outs, np.arange(outs.size), -1)) if outs.size else outs
        since = count - np.where(last_out >= 0, count[np.maximum(last_out, 0)], 0)
        after = np.where(last_out >= 0, since, count + inside) & 1  # inside (1) after each run
        feeds = np.flatnonzero(a == _LF)
        prior = np.searchsorted(starts, feeds) - 1  # the last run before each line feed
        state = np.where(prior >= 0, after[np.maximum(prior, 0)] if after.size else 0, int(inside))
        self.inside = bool(after[-1]) if after.size else inside
        self.last = int(a[-1])
        row_ends: np.ndarray = feeds[state == 0] + 1
        return row_ends

    def finish(self) -> bool:
        """Whether the bytes fed end inside a quoted field (a quote that is never closed)."""
        if self._pending:
            self.inside, self._pending = self._step(self.inside, self._pending, self._pending_at_start), 0
        return self.inside

    @staticmethod
    def _step(inside: bool, length: int, at_start: bool) -> bool:
        if length % 2 == 0:
            return inside
        return not inside if at_start else False
