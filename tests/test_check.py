"""`autograd-course check` passes on the committed course and names the problem on broken copies of it."""

from __future__ import annotations

import nbformat
import pytest

from autograd_course.check import check_course
from autograd_course.cli import main
from autograd_course.release import write_canonical

pytestmark = pytest.mark.slow

def edit(path, change):
    nb = nbformat.read(path, 4)
    change(nb)
    write_canonical(path, nb)


def cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_committed_course_passes(course, capsys):
    assert main(["check", "--root", str(course.root)]) == 0
    assert "course OK" in capsys.readouterr().out


def test_solution_that_fails_its_own_hidden_test(course):
    def break_solution(nb):
        answer = cell(nb, "q6-gradient-answer")
        answer.source = answer.source.replace("y = x**2 + 3 * x", "y = x**2 + 3")

    edit(course.source_dir / "q6_basic_gradients.ipynb", break_solution)
    problems = check_course(course)
    assert any("solution earns 0/4 on q6_gradient" in problem and "3*x" in problem for problem in problems), problems


def test_stale_release(course):
    def reword(nb):
        cell(nb, "q7-intro").source += "\n\nOne more sentence."

    edit(course.source_dir / "q7_weights.ipynb", reword)
    problems = check_course(course)
    assert any("release/q7_weights.ipynb is not what `autograd-course release` generates" in p for p in problems), problems


def test_hidden_test_left_in_release(course):
    def leak(nb):
        cell(nb, "q8_detach_error").source += "\n### BEGIN HIDDEN TESTS\nassert detach_error\n### END HIDDEN TESTS\n"

    edit(course.release_dir / "q8_breaking_the_graph.ipynb", leak)
    problems = check_course(course)
    assert any("release/q8_breaking_the_graph.ipynb" in p and "hidden tests" in p for p in problems), problems


def test_solution_left_in_release(course):
    def leak(nb):
        cell(nb, "q9-reset-answer").source = "x.grad.zero_()\n"

    edit(course.release_dir / "q9_gradient_accumulation.ipynb", leak)
    problems = check_course(course)
    assert any("q9-reset-answer contains solution code" in p for p in problems), problems


def test_duplicated_grade_id(course):
    def duplicate(nb):
        cell(nb, "q6c_tracking").metadata["nbgrader"]["grade_id"] = "q6b_no_grad_error"

    edit(course.source_dir / "q6_basic_gradients.ipynb", duplicate)
    problems = check_course(course)
    assert any("grade_id 'q6b_no_grad_error' is used twice" in p for p in problems), problems


def test_points_must_add_up(course):
    def inflate(nb):
        cell(nb, "q9_zero_grad").metadata["nbgrader"]["points"] = 5

    edit(course.source_dir / "q9_gradient_accumulation.ipynb", inflate)
    problems = check_course(course)
    assert any("worth 43 points in all" in p for p in problems), problems


def test_exit_status_and_message_name_each_problem(course, capsys):
    edit(course.source_dir / "q6_basic_gradients.ipynb", lambda nb: cell(nb, "q6-setup").outputs.append(
        nbformat.v4.new_output("stream", name="stdout", text="stale\n")))
    assert main(["check", "--root", str(course.root)]) == 1
    err = capsys.readouterr().err
    assert "source/q6_basic_gradients.ipynb: cell q6-setup has stored outputs" in err
    assert "1 problem(s) found" in err
