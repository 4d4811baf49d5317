"""Shared fixtures: a scratch copy of the course, and a way to hand it a class of submissions."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from autograd_course.course import Course
from autograd_course.release import write_canonical

REPO = Path(__file__).resolve().parent.parent
COURSE_FILES = ("grader_config.py", "nbgrader_config.py", "source", "release")


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


@pytest.fixture
def course(tmp_path) -> Course:
    return copy_course(tmp_path / "course")


@pytest.fixture(scope="module")
def module_course(tmp_path_factory) -> Course:
    return copy_course(tmp_path_factory.mktemp("course") / "course")
