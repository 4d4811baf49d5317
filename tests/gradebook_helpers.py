"""Reading a graded course back the way an instructor would: points per part, and what each failed check said."""

from __future__ import annotations

import html

import nbformat
from nbgrader.api import Gradebook

from autograd_course.course import Course


def part_scores(course: Course, student: str, notebook_id: str) -> dict[str, float]:
    with Gradebook(f"sqlite:///{course.gradebook}") as gradebook:
        submitted = gradebook.find_submission_notebook(notebook_id, course.assignment_id, student)
        return {grade.name: float(grade.score) for grade in submitted.grades}


def failure_message(course: Course, student: str, notebook_id: str, part: str) -> str:
    """The error a graded part ended with in the autograded notebook ('' when it passed)."""
    nb = nbformat.read(course.autograded_dir / student / course.assignment_id / f"{notebook_id}.ipynb", 4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == part:
            return "\n".join(f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.output_type == "error")
    raise KeyError(part)


def feedback_text(course: Course, student: str, notebook_id: str) -> str:
    page = course.feedback_dir / student / course.assignment_id / f"{notebook_id}.html"
    return html.unescape(page.read_text(encoding="utf-8"))
