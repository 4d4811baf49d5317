"""The class report's CSV files, written with `results.write_csv` (whole or not at all, formula-like cells quoted).

- ``scores.csv``: one row per student and graded part (test cell): points earned and available;
- ``item_analysis.csv``: for every part, the shares of students with full, partial and no credit, the mean
  points, and the most common failure message with how many students saw it.
"""

from __future__ import annotations

from pathlib import Path

from ..results import write_csv
from .data import ClassData, Item, number

SCORES_CSV = "scores.csv"
ITEM_ANALYSIS_CSV = "item_analysis.csv"

SCORE_COLUMNS = ["student_id", "notebook", "part", "points_earned", "points_available"]
ITEM_COLUMNS = [
    "notebook", "part", "points_available", "students", "full_credit_share", "partial_credit_share",
    "no_credit_share", "mean_points", "failed_students", "most_common_failure", "most_common_failure_count",
]


def score_rows(data: ClassData) -> list[list]:
    return [
        [student.student_id, part.notebook, part.name, number(student.earned(part.notebook, part.name)), number(part.available)]
        for student in data.students
        for part in data.parts
    ]


def item_rows(items: list[Item]) -> list[list]:
    lines = []
    for item in items:
        message, count = item.top_failure
        lines.append(
            [
                item.part.notebook, item.part.name, number(item.part.available), item.students,
                number(item.share(item.full)), number(item.share(item.partial)), number(item.share(item.none)),
                number(item.mean), item.failed, message, count,
            ]
        )
    return lines


def write_tables(data: ClassData, items: list[Item], folder: Path) -> list[Path]:
    return [
        write_csv(folder / SCORES_CSV, SCORE_COLUMNS, score_rows(data)),
        write_csv(folder / ITEM_ANALYSIS_CSV, ITEM_COLUMNS, item_rows(items)),
    ]
