"""Keep the README's `## Benchmarks` tables in step with the latest full run."""

from __future__ import annotations

from pathlib import Path

START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def update_readme(readme: Path, tables: str) -> bool:
    """Replace the text between the markers; False (and no change) without markers."""
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{tables.strip()}\n{END}{tail}")
    return True
