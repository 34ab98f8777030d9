"""PostgreSQL's text form of arrays (`{1,2,NULL}`, `{"a b","c\\"d"}`, `{{1,2},{3,4}}`) as Python lists,
for targets that have arrays of their own (MongoDB)."""

from __future__ import annotations

from collections.abc import Callable


def parse_array(text: str, element: Callable[[str], object] = str) -> list[object]:
    """The array literal `text` as nested lists; unquoted NULL is None; `element` converts each
    other element's text (e.g. int for integer[])."""
    pos = 0

    def parse() -> list[object]:
        nonlocal pos
        if text[pos] != "{":
            raise ValueError(f"array literal expected '{{' at {pos}: {text[:40]!r}")
        pos += 1
        out: list[object] = []
        if text[pos] == "}":
            pos += 1
            return out
        while True:
            if text[pos] == "{":
                out.append(parse())
            elif text[pos] == '"':
                pos += 1
                chars: list[str] = []
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    chars.append(text[pos])
                    pos += 1
                pos += 1
                out.append(element("".join(chars)))
            else:
                end = pos
                while text[end] not in ",}":
                    end += 1
                raw = text[pos:end].strip()
                out.append(None if raw.upper() == "NULL" else element(raw))
                pos = end
            if text[pos] == ",":
                pos += 1
                continue
            if text[pos] == "}":
                pos += 1
                return out
            raise ValueError(f"array literal: unexpected {text[pos]!r} at {pos}")

    if text.startswith("["):  # explicit bounds, e.g. [0:1]={1,2}
        text = text[text.index("=") + 1:]
    return parse()


def element_parser(element_type: str) -> Callable[[str], object]:
    """How one element's text becomes a Python value, by the array's element type."""
    t = element_type.lower()
    if t in ("smallint", "integer", "bigint", "int2", "int4", "int8"):
        return int
    if t in ("real", "double precision", "float4", "float8"):
        return float
    if t in ("boolean", "bool"):
        return lambda s: s in ("t", "true")
    return str
