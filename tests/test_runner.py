"""The sandboxed runner on its own: what a graded cell may print without losing its points, and what the
runner sees of the machine."""

from __future__ import annotations

import pytest
from nbformat import from_dict
from nbgrader.utils import determine_grade

from autograd_course.sandbox import Runner


@pytest.fixture(scope="module")
def runner():
    runner = Runner(sandboxed=True)
    runner.start()
    yield runner
    runner.stop()


def run(runner, *cells, timeout=10):
    request = {
        "cells": [{"source": source, "test": is_test} for source, is_test in cells],
        "cell_timeout": timeout,
        "memory_mb": 2048,
        "output_limit": 100_000,
    }
    return runner.run(request, budget=120)


def grade_of(result) -> float:
    """What nbgrader would give a 1-point test cell with these outputs."""
    cell = from_dict({
        "cell_type": "code", "source": "", "execution_count": 1, "outputs": result["outputs"],
        "metadata": {"nbgrader": {"grade": True, "solution": False, "points": 1, "grade_id": "t"}},
    })
    return determine_grade(cell)[0]


def test_a_warning_in_a_passing_test_does_not_cost_its_points(runner):
    # float() on a tensor that requires grad warns in torch; stock nbgrader scores such a cell 0.
    reply = run(runner, ("import torch\nx = torch.tensor([2.0], requires_grad=True)", False),
                ("import warnings\nwarnings.warn('just so you know')\nassert float(x * 1) == 2.0", True))
    test = reply["cells"][1]
    assert grade_of(test) == 1
    assert "just so you know" in test["outputs"][0]["text"]


def test_stderr_printed_by_a_test_does_not_cost_its_points(runner):
    reply = run(runner, ("import sys\nprint('note', file=sys.stderr)\nassert True", True))
    assert grade_of(reply["cells"][0]) == 1


def test_a_failing_test_still_fails(runner):
    reply = run(runner, ("assert 1 == 2, 'one is not two'", True))
    assert grade_of(reply["cells"][0]) == 0
    error = reply["cells"][0]["outputs"][-1]
    assert (error["ename"], error["evalue"]) == ("AssertionError", "one is not two")


def test_the_traceback_of_a_test_shows_no_test_source(runner):
    reply = run(runner, ("secret_check = 41\nassert secret_check == 42, 'wrong answer'", True))
    assert "secret_check" not in "".join(reply["cells"][0]["outputs"][-1]["traceback"])


def test_torch_imports_cleanly_with_numpy(runner):
    reply = run(runner, ("import numpy, torch\nprint(torch.tensor([1.0]).numpy().sum())", False))
    assert reply["cells"][0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "1.0\n"}]


def test_each_notebook_starts_clean(runner):
    run(runner, ("import torch\nleft_behind = 1\ntorch.secret = 2\nopen('/tmp/note.txt', 'w').write('x')", False))
    reply = run(runner, ("import os, torch\nprint('left_behind' in globals(), hasattr(torch, 'secret'),"
                         " os.path.exists('/tmp/note.txt'))", False))
    assert reply["cells"][0]["outputs"][0]["text"] == "False False False\n"


def test_honest_code_is_not_reported_as_tampering(runner):
    reply = run(runner, (
        "import torch, math\nx = torch.tensor([1.0], requires_grad=True)\nopt = torch.optim.SGD([x], lr=0.1)\n"
        "(x * 2).backward()\nopt.step()\nopt.zero_grad()\nimport torch.distributions\nimport warnings\n"
        "warnings.simplefilter('ignore')\nsum = 3\nmax = [1]", False), ("assert abs(-1) == 1 and len([sum]) == 1", True))
    assert reply["events"] == []
    assert grade_of(reply["cells"][1]) == 1
