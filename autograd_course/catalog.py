"""Submissions as students write them: the solutions, and a catalog of right and wrong answers.

Each Variant changes some answer cells of one notebook and states the points every part of that notebook
must earn, and the hint that explains each lost part. The variants are data, one file per notebook in
``answers/`` (see ``load_variants``). The test suite grades every variant as a real submission; the demo class
is made of them.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import Course


def _grade_id(cell) -> str | None:
    meta = cell.metadata.get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def solution_answers(course: Course, notebook_id: str) -> dict[str, str]:
    """The instructor's answer for every answer cell of a notebook, as a student would type it."""
    source = nbformat.read(course.source_dir / f"{notebook_id}.ipynb", 4)
    marks = course.delimiters
    delimiter_line = re.compile(
        rf"^[^\n]*(?:{re.escape(marks.begin_solution)}|{re.escape(marks.end_solution)})[^\n]*\n?", re.MULTILINE
    )
    return {
        grade_id: delimiter_line.sub("", cell.source)
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("solution") and (grade_id := _grade_id(cell)) is not None
    }


def part_points(course: Course, notebook_id: str) -> dict[str, float]:
    """Points of every graded part (test cell) of a notebook, in notebook order."""
    release = nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4)
    return {
        grade_id: float(cell.metadata["nbgrader"]["points"])
        for cell in release.cells
        if cell.metadata.get("nbgrader", {}).get("grade") and (grade_id := _grade_id(cell)) is not None
    }


def submission(course: Course, notebook_id: str, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """A release notebook with the given answer cells filled in (None: left as released)."""
    nb = copy.deepcopy(nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4))
    for cell in nb.cells:
        grade_id = _grade_id(cell)
        if answers and grade_id is not None and grade_id in answers:
            cell.source = answers[grade_id]
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


ANSWERS_DIR = Path(__file__).resolve().parent / "answers"
_ENTRY_KEYS = {"name", "answers", "lost", "hints"}


def load_variants(folder: Path = ANSWERS_DIR) -> tuple[list[Variant], list[Variant]]:
    """The catalog's data: one TOML file per notebook (``<notebook id>.toml``), each with ``[[mistake]]`` and
    ``[[alternative]]`` entries. A mistake names the parts it loses (``lost``) and, for each, a phrase of the
    failure message that names its cause (``hints``); an alternative loses nothing."""
    mistakes: list[Variant] = []
    alternatives: list[Variant] = []
    for path in sorted(folder.glob("*.toml")):
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        unknown = set(data) - {"mistake", "alternative"}
        if unknown:
            raise ValueError(f"{path.name}: unknown tables {sorted(unknown)}")
        for kind, into in (("mistake", mistakes), ("alternative", alternatives)):
            for entry in data.get(kind, []):
                if set(entry) - _ENTRY_KEYS or "name" not in entry or not entry.get("answers"):
                    raise ValueError(f"{path.name}: a {kind} needs a name and answers, and only {sorted(_ENTRY_KEYS)}: {entry}")
                if kind == "alternative" and (entry.get("lost") or entry.get("hints")):
                    raise ValueError(f"{path.name}: the alternative {entry['name']!r} loses nothing, it has no lost or hints")
                into.append(Variant(entry["name"], path.stem, dict(entry["answers"]),
                                    lost=dict(entry.get("lost", {})), hints=dict(entry.get("hints", {}))))
    names = [variant.name for variant in mistakes + alternatives]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"catalog names used twice: {repeated}")
    return mistakes, alternatives


#: Wrong answers: each loses the points of the parts it gets wrong, and nothing else.
#: Right answers written differently from the solution: each earns full marks.
MISTAKES, ALTERNATIVES = load_variants()

CATALOG = MISTAKES + ALTERNATIVES


def pack_into_students(variants: list[Variant], prefix: str) -> dict[str, dict[str, Variant]]:
    """Notebooks are graded independently, so one student can carry one variant of each notebook."""
    students: dict[str, dict[str, Variant]] = {}
    for variant in variants:
        for student in students.values():
            if variant.notebook not in student:
                student[variant.notebook] = variant
                break
        else:
            students[f"{prefix}{len(students) + 1:02d}"] = {variant.notebook: variant}
    return students


def by_name(name: str) -> Variant:
    for variant in CATALOG:
        if variant.name == name:
            return variant
    raise KeyError(name)
