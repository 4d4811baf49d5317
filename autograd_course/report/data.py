"""What the class report shows, as one value: `ClassData`.

`load_class` reads it: the graded parts from nbgrader's gradebook, every student's result (`results.StudentResult`,
the same one grades.csv is written from, with the points of each part) and the failure messages of the parts
students lost points on, from the autograded notebooks. Everything else (the item analysis, the points per
question) is computed from a `ClassData` without reading anything, so a hand-built one is enough to test the CSVs,
the plots and the page.

The report counts the points the checks (and manual grading) gave each part, before any late penalty;
`StudentResult.score` and grades.csv have the scores with it.
"""

from __future__ import annotations

import re
import statistics
import warnings
from collections import Counter
from dataclasses import dataclass, field

import nbformat

from .. import results
from ..course import Course, CourseError
from ..results import StudentResult

MESSAGE_LIMIT = 500  # characters of a failure message kept (the CSV); the page shows fewer
EPSILON = 1e-9  # points closer than this count as equal

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Part:
    notebook: str
    name: str  # the test cell's grade_id
    available: float


@dataclass
class Item:
    """One part's item analysis."""

    part: Part
    students: int
    full: int
    partial: int
    none: int
    mean: float
    failures: Counter  # failure message -> students who saw it

    def share(self, count: int) -> float:
        return count / self.students if self.students else 0.0

    @property
    def failed(self) -> int:
        """Students whose check failed with a message (those who lost points on it and have a graded notebook)."""
        return sum(self.failures.values())

    @property
    def top_failure(self) -> tuple[str, int]:
        if not self.failures:
            return "", 0
        # most students first; among equals, the message first seen (notebooks are read in student order)
        return max(self.failures.items(), key=lambda item: item[1])

    def ranked_failures(self) -> list[tuple[str, int]]:
        """Every message, most students first; among equals, the message first seen."""
        return sorted(self.failures.items(), key=lambda pair: -pair[1])


@dataclass
class ClassData:
    assignment_id: str
    course_id: str
    parts: list[Part]  # question by question, each question's parts in notebook order
    students: list[StudentResult]  # by student id
    max_score: float
    failures: dict[str, Counter] = field(default_factory=dict)  # part name -> failure message -> students

    @property
    def notebooks(self) -> list[str]:
        return list(dict.fromkeys(part.notebook for part in self.parts))

    @property
    def not_ok(self) -> list[StudentResult]:
        return [student for student in self.students if student.status != "ok"]

    def total(self, student: StudentResult) -> float:
        """A student's points on every part, before any late penalty."""
        return sum(student.earned(part.notebook, part.name) for part in self.parts)

    def notebook_points(self, student: StudentResult, notebook: str) -> float:
        return sum(student.earned(notebook, part.name) for part in self.parts if part.notebook == notebook)

    def notebook_max(self, notebook: str) -> float:
        return sum(part.available for part in self.parts if part.notebook == notebook)

    def items(self) -> list[Item]:
        items = []
        for part in self.parts:
            points = [student.earned(part.notebook, part.name) for student in self.students]
            full = sum(1 for value in points if value >= part.available - EPSILON)
            none = sum(1 for value in points if value <= EPSILON and part.available > 0)
            items.append(
                Item(
                    part=part,
                    students=len(points),
                    full=full,
                    partial=len(points) - full - none,
                    none=none,
                    mean=statistics.fmean(points) if points else 0.0,
                    failures=self.failures.get(part.name, Counter()),
                )
            )
        return items


# ------------------------------------------------------------------------------------------ formatting
def number(value: float) -> str:
    """Points as the report writes them: ``4``, ``1.5``, ``0.3333``."""
    return f"{round(value, 4):g}"


def short_name(notebook: str) -> str:
    """q6_basic_gradients -> 'Q6\\nbasic gradients'"""
    head, _, rest = notebook.partition("_")
    return f"{head.upper()}\n{rest.replace('_', ' ')}" if rest else head


def question(notebook: str) -> str:
    """q6_basic_gradients -> 'Q6'"""
    return short_name(notebook).splitlines()[0]


# --------------------------------------------------------------------------------------------- reading
def load_class(course: Course, rows: list[StudentResult] | None = None) -> ClassData:
    """Everything the report shows. The class is ``rows`` (what `grade` just computed) or else every folder under
    submitted/ read from the gradebook as grades.csv is (``results.read_class``); only without submitted/, the
    gradebook's students."""
    from nbgrader.api import MissingEntry

    if course.gradebook is not None and not course.gradebook.is_file():
        raise CourseError(f"there is no {course.gradebook}: run `autograd-course grade` first")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader 0.9.6 trips SQLAlchemy 2 autoflush warnings
        with results.open_gradebook(course) as gradebook:
            try:
                assignment = gradebook.find_assignment(course.assignment_id)
            except MissingEntry:
                raise CourseError(
                    f"the gradebook has no assignment {course.assignment_id!r}: run `autograd-course grade` first"
                ) from None
            parts = _parts(course, assignment)
            max_score = float(assignment.max_score)
            if rows is None:
                try:
                    student_ids = results.find_students(course)
                except CourseError:
                    student_ids = sorted(submission.student.id for submission in assignment.submissions)
                rows = results.read_class(course, student_ids, gradebook)
    students = sorted(rows, key=lambda student: student.student_id)
    return ClassData(
        course.assignment_id, str(course.course_id or ""), parts, students, max_score, read_failures(course, parts, students)
    )


def _parts(course: Course, assignment) -> list[Part]:
    """The graded parts, question by question, each question's parts in notebook order."""
    from ..catalog import part_points

    notebooks = {notebook.name: notebook for notebook in assignment.notebooks}
    order = [name for name in course.notebook_ids if name in notebooks] + sorted(set(notebooks) - set(course.notebook_ids))
    parts = []
    for name in order:
        cells = {cell.name: float(cell.max_score) for cell in notebooks[name].grade_cells}
        try:
            position = list(part_points(course, name))
        except (OSError, KeyError, ValueError):
            position = []
        for cell in sorted(cells, key=lambda cell: (position.index(cell) if cell in position else len(position), cell)):
            parts.append(Part(name, cell, cells[cell]))
    return parts


def failure_message(output) -> str:
    """What a failed check said: an assertion's message, else ``Error: message``."""
    name = str(output.get("ename") or "Error")
    value = _ANSI.sub("", str(output.get("evalue") or "")).strip()
    message = value if value and name == "AssertionError" else f"{name}: {value}" if value else name
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return message


def read_failures(course: Course, parts: list[Part], students: list[StudentResult]) -> dict[str, Counter]:
    """part name -> Counter of the failure messages of the students who lost points on it, from the autograded
    notebooks as graded (a missing notebook counts with the messages of the untouched release)."""
    from nbgrader import utils

    by_notebook: dict[str, list[Part]] = {}
    for part in parts:
        by_notebook.setdefault(part.notebook, []).append(part)
    messages: dict[str, Counter] = {part.name: Counter() for part in parts}
    for student in students:
        for notebook, notebook_parts in by_notebook.items():
            lost = {
                part.name for part in notebook_parts if student.earned(notebook, part.name) < part.available - EPSILON
            }
            if not lost:
                continue
            path = course.autograded_dir / student.student_id / course.assignment_id / f"{notebook}.ipynb"
            try:
                nb = nbformat.read(path, 4)
            except Exception:  # noqa: BLE001, S112 - no graded notebook: its status says why
                continue
            for cell in nb.cells:
                if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
                    continue
                name = cell.metadata["nbgrader"].get("grade_id")
                if name not in lost:
                    continue
                errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
                if errors:
                    messages[name][failure_message(errors[0])] += 1
                    lost.discard(name)  # a cell counted once per student
    return messages
