"""The published numbers the tables are compared with (``paper_results.json``, shipped here).

The file holds, per table, one entry per published row: our model name and the paper's,
whether it is the row with or without SAMAug, the test split, the values as printed
(percent) and the source of the row's values: the document ("source": a repository file at a
commit, or the arXiv version) and the table in it ("where"). Entries the authors published
but we could not read from a citable source are listed under "missing" with the reason,
never filled in.

Which of our rows a published row stands beside is OUR mapping, stated in the file under
"mapping": "without SAMAug" is the ``raw``-trained model tested on raw images, "with SAMAug"
the ``joint``-trained model with the ``select`` strategy, as the released polyp script trains
and tests. The paper's tables may use another combination; the note in the file says so and
the Markdown tables repeat it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

PAPER_FILE = "paper_results.json"
PERCENT = 100.0  # the file's values are percent; ours are fractions (rounded: no 0.6430000001)


@dataclass(frozen=True)
class PaperRow:
    """One published row. values: {our metric name: value as a fraction, like ours}.
    source: the document (a file at a commit, or the arXiv version); where: the table in it."""

    table: str
    model: str
    paper_model: str
    samaug: bool
    split: str
    values: dict[str, float]
    source: str
    where: str


@dataclass(frozen=True)
class PaperResults:
    """The whole file. mapping: {samaug flag: (training mode, strategy)} (OUR mapping)."""

    paper: str
    mapping: dict[bool, tuple[str, str]]
    mapping_note: str
    rows: tuple[PaperRow, ...]
    missing: tuple[dict, ...]
    notes: tuple[str, ...]

    def row(self, table: str, model: str, mode: str, strategy: str, split: str) -> PaperRow | None:
        """The published row our (model, mode, strategy) row of ``split`` stands beside."""
        flags = [flag for flag, pair in self.mapping.items() if pair == (mode, strategy)]
        for r in self.rows:
            if (r.table, r.model, r.split) == (table, model, split) and r.samaug in flags:
                return r
        return None

    def value(
        self, table: str, model: str, mode: str, strategy: str, split: str, metric: str
    ) -> float | None:
        """The published value (a fraction) beside one cell of ours, or None."""
        found = self.row(table, model, mode, strategy, split)
        return None if found is None else found.values.get(metric)

    def has_table(self, table: str) -> bool:
        return any(r.table == table for r in self.rows)

    def sources(self, table: str) -> dict[str, list[str]]:
        """{source: [where in it, ...]} of a table's published rows, in file order."""
        found: dict[str, list[str]] = {}
        for r in self.rows:
            if r.table == table and r.where not in found.setdefault(r.source, []):
                found[r.source].append(r.where)
        return found

    def missing_for(self, table: str) -> list[dict]:
        return [m for m in self.missing if m["table"] == table]


@cache
def load_paper() -> PaperResults:
    """``paper_results.json`` as shipped with the package."""
    text = resources.files(__package__).joinpath(PAPER_FILE).read_text()
    return parse_paper(json.loads(text))


def parse_paper(data: dict) -> PaperResults:
    mapping = {
        False: _pair(data["mapping"]["without_samaug"]),
        True: _pair(data["mapping"]["with_samaug"]),
    }
    rows = tuple(
        PaperRow(
            table=table,
            model=r["model"],
            paper_model=r["paper_model"],
            samaug=bool(r["samaug"]),
            split=r["split"],
            values={k: round(v / PERCENT, 12) for k, v in r["values"].items()},
            source=r["source"],
            where=r["where"],
        )
        for table, content in data["tables"].items()
        for r in content["rows"]
    )
    return PaperResults(
        paper=data["paper"],
        mapping=mapping,
        mapping_note=data["mapping"]["note"],
        rows=rows,
        missing=tuple(data.get("missing", [])),
        notes=tuple(data.get("notes", [])),
    )


def _pair(entry: dict) -> tuple[str, str]:
    return entry["mode"], entry["strategy"]
