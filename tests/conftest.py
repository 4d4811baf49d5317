"""Shared fixtures: a scratch copy of the course, for one test or for a module."""

from __future__ import annotations

import pytest

from autograd_course.course import Course

from course_helpers import copy_course


@pytest.fixture
def course(tmp_path) -> Course:
    return copy_course(tmp_path / "course")


@pytest.fixture(scope="module")
def module_course(tmp_path_factory) -> Course:
    return copy_course(tmp_path_factory.mktemp("course") / "course")
