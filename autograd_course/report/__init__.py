"""`autograd-course report`: what the class got right and wrong, from the gradebook.

``write_report(course)`` writes ``<course root>/reports/``:

- ``scores.csv``: one row per student and graded part (test cell): points earned and available;
- ``item_analysis.csv``: for every part, the shares of students with full, partial and no credit, the mean
  points, and the most common failure message (the error a failed test cell showed in the autograded notebooks)
  with how many students saw it;
- ``score_distribution.png``, ``question_means.png``, ``part_credit.png``: the plots;
- ``index.html``: one static page with the plots, the item analysis and the students whose status is not ok.

Three steps, each its own module: data.py reads the class into a `ClassData` (the graded parts, and every
student's `results.StudentResult`: the one grades.csv is written from, with the points of each part); tables.py
and plots.py write the CSVs and draw the plots from it; page.py renders index.html from the Jinja2 templates in
templates/, autoescaped. Every student under submitted/ is counted, including those whose notebooks are missing or
broken (they earn 0 on those parts); failure messages are counted from the autograded notebooks as graded, so a
missing notebook counts with the messages of the untouched release.

``report_after_grading(course, rows)``, printed by `autograd-course grade`, also writes the report.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..course import Course
from ..results import StudentResult
from .data import ClassData, Item, Part, failure_message, load_class, number
from .page import render as render_page
from .plots import write_plots
from .tables import write_tables

__all__ = [
    "ClassData", "Item", "Part", "failure_message", "load_class", "most_often_failed", "render_page",
    "report_after_grading", "write", "write_plots", "write_report", "write_tables",
]

REPORT_DIR = "reports"
INDEX_HTML = "index.html"


def write_report(course: Course, rows: list[StudentResult] | None = None) -> Path:
    """Write reports/ (CSVs, plots and index.html) and return the path of index.html."""
    return write(load_class(course, rows), course.root / REPORT_DIR)


def write(data: ClassData, folder: Path) -> Path:
    """The report of ``data`` in ``folder``; returns the path of index.html. Each file is written whole or not at
    all (through a ``.tmp`` beside it)."""
    folder.mkdir(exist_ok=True)
    items = data.items()
    write_tables(data, items, folder)
    write_plots(data, items, folder)
    page = folder / INDEX_HTML
    temporary = page.with_name(page.name + ".tmp")
    temporary.write_text(render_page(data, items), encoding="utf-8", errors="backslashreplace")
    temporary.replace(page)
    return page


def report_after_grading(course: Course, rows: list[StudentResult]) -> list[str]:
    """A few lines for the end of `autograd-course grade`. Writes the report too, and says where it is."""
    lines = []
    totals = [row.score for row in rows]
    maximum = number(rows[0].max_score) if rows else "?"
    if totals:
        lines.append(
            f"class: {len(totals)} students, mean {statistics.fmean(totals):.1f}/{maximum}, "
            f"median {number(statistics.median(totals))}/{maximum}"
        )
    else:
        lines.append("class: no students graded")
    not_ok = [row for row in rows if row.status != "ok"]
    lines.append(
        f"not ok: {len(not_ok)} of {len(rows)} students (see the status and notes columns of grades.csv)"
        if not_ok else "not ok: none, every student's notebooks were graded as submitted"
    )
    try:
        data = load_class(course, rows)
    except Exception as error:  # noqa: BLE001 - grading is done and saved; the summary must not undo that
        lines.append(f"report not written: {error}")
        return lines
    lines.extend(most_often_failed(data))
    try:
        page = write(data, course.root / REPORT_DIR)
    except Exception as error:  # noqa: BLE001
        lines.append(f"report not written: {error}")
    else:
        lines.append(f"report: {page} (and the CSVs and plots beside it)")
    return lines


def most_often_failed(data: ClassData, shown: int = 3) -> list[str]:
    """The summary's line about the parts most students did not get full credit on (none without students)."""
    failed = sorted(
        (item for item in data.items() if item.full < item.students),
        key=lambda item: (-(item.students - item.full), item.mean / item.part.available if item.part.available else 0),
    )[:shown]
    if failed:
        return [
            "most often failed: "
            + ", ".join(f"{item.part.name} ({item.students - item.full} of {item.students} without full credit)" for item in failed)
        ]
    if data.students:
        return ["most often failed: none, every part earned full credit"]
    return []
