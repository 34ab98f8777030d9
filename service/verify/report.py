"""The verification report for people: Markdown, from the report's JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def markdown(report: Mapping[str, Any], *, migration_id: str, source: str, target: str) -> str:
    tables: Sequence[Mapping[str, Any]] = report.get("tables", [])
    verdict = "**OK** — the target holds the source's rows minus the reported rejects" if report.get("ok") else (
        "**NOT OK** — see the problems below")
    lines = [
        f"# Verification of migration {migration_id}",
        "",
        f"- Source: `{source}`",
        f"- Target: `{target}`",
        f"- Checked: {report.get('checkedAt')} ({'counts and row checksums' if report.get('deep') else 'counts'}, "
        f"{report.get('seconds')} s)",
        f"- Result: {verdict}",
        "",
        "| table | target | source rows | rejected | expected | target rows | counts | checksums |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for t in tables:
        checksum = t.get("checksumMatch")
        lines.append(f"| {t['name']} | {t['target']} | {t['sourceCount']} | {t['rejected']} | {t['expectedCount']} | "
                     f"{t.get('targetCount', '—')} | {'match' if t.get('match') else 'MISMATCH'} | "
                     f"{'—' if checksum is None else 'match' if checksum else 'MISMATCH'} |")
    problems = [(t["name"], p) for t in tables for p in t.get("problems", [])]
    lines += ["", "## Problems", ""]
    lines += [f"- **{name}**: {p}" for name, p in problems] or ["None."]
    for t in tables:
        if t.get("missing") or t.get("extra") or t.get("different"):
            lines += ["", f"## {t['name']}: rows that differ (key {', '.join(t.get('key', []))})", ""]
            for what in ("missing", "extra", "different"):
                keys = t.get(what) or []
                if keys:
                    more = t.get(f"{what}Count", len(keys)) - len(keys)
                    lines.append(f"- {what} ({t.get(what + 'Count', len(keys))}): {', '.join(map(str, keys))}"
                                 + (f" and {more} more" if more > 0 else ""))
    return "\n".join(lines) + "\n"
