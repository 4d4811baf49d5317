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


def feedback_page(course: Course, student: str, notebook_id: str) -> str:
    """A feedback page as written (HTML)."""
    page = course.feedback_dir / student / course.assignment_id / f"{notebook_id}.html"
    return page.read_text(encoding="utf-8")


def active_content(page: str, mark: str) -> list[str]:
    """What in a page a browser would act on and that carries ``mark`` (a string put in every injected tag,
    attribute and script), and any event-handler attribute at all: [] for a page where ``mark`` is only text."""
    from bs4 import BeautifulSoup

    found = []
    for tag in BeautifulSoup(page, "html.parser").find_all(True):
        if mark in tag.name:
            found.append(f"<{tag.name}>")
        for name, value in tag.attrs.items():
            value = " ".join(value) if isinstance(value, list) else str(value)
            if name.lower().startswith("on") or mark in name or mark in value:
                found.append(f"<{tag.name} {name}={value!r}>")
        if tag.name in ("script", "style", "iframe", "object", "embed", "svg", "math", "template") and mark in tag.decode():
            found.append(f"<{tag.name}>{tag.decode()[:80]}")
    return found


def shown_text(page: str, between: str = "") -> str:
    """A page as a reader sees it: tags removed (``between`` put in their place), character references decoded."""
    from bs4 import BeautifulSoup

    return BeautifulSoup(page, "html.parser").get_text(between)
