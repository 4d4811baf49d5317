"""The course as the tests see it: its shape (read from the course, not written out), a scratch copy of it, and a
way to hand it a class of submissions."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat

from autograd_course.course import Course
from autograd_course.release import write_canonical

REPO = Path(__file__).resolve().parent.parent
COURSE_FILES = ("grader_config.py", "nbgrader_config.py", "source", "release")

# The course's shape, so that a new notebook or a re-split part changes the course, not the tests.
THE_COURSE = Course.at(REPO)
NOTEBOOKS = THE_COURSE.notebook_ids
ASSIGNMENT = THE_COURSE.assignment_id
FULL_MARKS = THE_COURSE.settings.total_points


def marks(lost: float = 0) -> str:
    """A total as grades.csv writes it: full marks less ``lost``."""
    return f"{FULL_MARKS - lost:g}"


def notebook_marks(notebook_id: str) -> float:
    """The points one notebook is worth, from the release."""
    from autograd_course.catalog import part_points

    return sum(part_points(THE_COURSE, notebook_id).values())


def copy_course(destination: Path) -> Course:
    """The course as an instructor has it, without any grading state."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in COURSE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name)
        else:
            shutil.copy2(source, destination / name)
    return Course.at(destination)


def submit(course: Course, student: str, notebooks: dict[str, nbformat.NotebookNode | bytes | None]) -> Path:
    """Put a student's files where nbgrader collects them. A value of bytes is written as is (broken files);
    None leaves that notebook out."""
    folder = course.submitted_dir / student / course.assignment_id
    folder.mkdir(parents=True, exist_ok=True)
    for notebook_id, content in notebooks.items():
        path = folder / f"{notebook_id}.ipynb"
        if content is None:
            continue
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_canonical(path, content)
    return folder


def hidden_lines(course: Course, notebook_id: str) -> list[str]:
    """Distinctive lines of the hidden tests of a source notebook: long enough to be specific, and not also
    in the visible part that students see anyway."""
    visible = {line.strip() for cell in nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4).cells
               for line in cell.source.splitlines()}
    lines = []
    for cell in nbformat.read(course.source_dir / f"{notebook_id}.ipynb", 4).cells:
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.S):
            lines += [line.strip() for line in block.splitlines()
                      if len(line.strip()) >= 25 and line.strip() not in visible]
    return lines
