"""Where the gradebook is: nbgrader's `CourseDirectory.db_url` in grader_config.py, the SQLite file in the course
root by default, and a gradebook that cannot be reached named before anything is graded (grade, report, check).
The real PostgreSQL server is in test_cluster.py; these need no server."""

from __future__ import annotations

import pytest

from autograd_course.check import check_course
from autograd_course.course import Course, CourseError
from autograd_course.results import check_gradebook

from cluster_helpers import free_port


def configured(course: Course, db_url: str) -> Course:
    with open(course.root / "grader_config.py", "a", encoding="utf-8") as config:
        config.write(f"\nc.CourseDirectory.db_url = {db_url!r}\n")
    return Course.at(course.root)


def test_the_default_gradebook_is_the_sqlite_file_in_the_course_root(course):
    assert course.db_url == f"sqlite:///{course.root / 'gradebook.db'}"
    check_gradebook(course)  # nothing to reach: nbgrader makes the file when it first uses it


def test_the_setting_in_grader_config_decides(course):
    url = "sqlite:///" + str(course.root / "elsewhere.db")
    assert configured(course, url).db_url == url


def test_a_postgresql_server_that_does_not_answer_is_named(course):
    url = f"postgresql+psycopg://grader@127.0.0.1:{free_port()}/gradebook"
    with pytest.raises(CourseError, match=r"cannot reach the gradebook at postgresql\+psycopg://grader@127\.0\.0\.1:\d+/gradebook"):
        check_gradebook(configured(course, url))


def test_a_password_in_the_url_is_not_shown(course):
    url = f"postgresql+psycopg://grader:hunter2@127.0.0.1:{free_port()}/gradebook"
    with pytest.raises(CourseError) as raised:
        check_gradebook(configured(course, url))
    assert "hunter2" not in str(raised.value)


def test_a_setting_that_is_not_a_url_is_named(course):
    with pytest.raises(CourseError, match="not a database URL"):
        check_gradebook(configured(course, "gradebook.db"))


def test_check_names_an_unreachable_gradebook(course):
    url = f"postgresql+psycopg://grader@127.0.0.1:{free_port()}/gradebook"
    problems = check_course(configured(course, url))
    assert any("cannot reach the gradebook" in problem for problem in problems), problems
