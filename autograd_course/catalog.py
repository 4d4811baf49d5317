"""Submissions as students write them: the solutions, and a catalog of right and wrong answers.

Each Variant changes some answer cells of one notebook and states the points every part of that notebook
must earn, and the hint that explains each lost part. The test suite grades every variant as a real submission;
the demo class is made of them.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import nbformat

from .course import Course

_SOLUTION_LINE = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


def _grade_id(cell) -> str | None:
    meta = cell.metadata.get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def solution_answers(course: Course, notebook_id: str) -> dict[str, str]:
    """The instructor's answer for every answer cell of a notebook, as a student would type it."""
    source = nbformat.read(course.source_dir / f"{notebook_id}.ipynb", 4)
    return {
        _grade_id(cell): _SOLUTION_LINE.sub("", cell.source)
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def part_points(course: Course, notebook_id: str) -> dict[str, float]:
    """Points of every graded part (test cell) of a notebook, in notebook order."""
    release = nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4)
    return {
        _grade_id(cell): float(cell.metadata["nbgrader"]["points"])
        for cell in release.cells
        if cell.metadata.get("nbgrader", {}).get("grade")
    }


def submission(course: Course, notebook_id: str, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """A release notebook with the given answer cells filled in (None: left as released)."""
    nb = copy.deepcopy(nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4))
    for cell in nb.cells:
        if answers and _grade_id(cell) in answers:
            cell.source = answers[_grade_id(cell)]
    return nb


def solved(course: Course, notebook_id: str, changes: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The solution, with some answer cells replaced."""
    answers = solution_answers(course, notebook_id)
    answers.update(changes or {})
    return submission(course, notebook_id, answers)


@dataclass(frozen=True)
class Variant:
    """One way a student may answer a notebook: the answer cells it changes from the solution, and what the
    grader must make of it."""

    name: str
    notebook: str
    answers: dict[str, str]
    #: points each part must earn; parts not listed must earn full marks
    lost: dict[str, float] = field(default_factory=dict)
    #: for each part that loses points, a phrase its failure message must contain
    hints: dict[str, str] = field(default_factory=dict)

    def expected_points(self, course: Course) -> dict[str, float]:
        points = part_points(course, self.notebook)
        return {part: self.lost.get(part, full) for part, full in points.items()}

    def build(self, course: Course) -> nbformat.NotebookNode:
        return solved(course, self.notebook, self.answers)
