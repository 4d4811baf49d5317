"""Submissions as students write them: the solutions, and a catalog of right and wrong answers.

Each Variant changes some answer cells of one notebook and states the points every part of that notebook
must earn, and the hint that explains each lost part. The test suite grades every variant as a real submission;
the demo class is made of them.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import nbformat

from .course import Course

_SOLUTION_LINE = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


def _grade_id(cell) -> str | None:
    meta = cell.metadata.get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def solution_answers(course: Course, notebook_id: str) -> dict[str, str]:
    """The instructor's answer for every answer cell of a notebook, as a student would type it."""
    source = nbformat.read(course.source_dir / f"{notebook_id}.ipynb", 4)
    return {
        _grade_id(cell): _SOLUTION_LINE.sub("", cell.source)
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def part_points(course: Course, notebook_id: str) -> dict[str, float]:
    """Points of every graded part (test cell) of a notebook, in notebook order."""
    release = nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4)
    return {
        _grade_id(cell): float(cell.metadata["nbgrader"]["points"])
        for cell in release.cells
        if cell.metadata.get("nbgrader", {}).get("grade")
    }


def submission(course: Course, notebook_id: str, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """A release notebook with the given answer cells filled in (None: left as released)."""
    nb = copy.deepcopy(nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4))
    for cell in nb.cells:
        if answers and _grade_id(cell) in answers:
            cell.source = answers[_grade_id(cell)]
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


def _q6(name, gradient=None, **kwargs) -> Variant:
    answers = {"q6-gradient-answer": gradient} if gradient else {}
    answers.update(kwargs.pop("answers", {}))
    return Variant(name, "q6_basic_gradients", answers, **kwargs)


Q6_PRINT = 'print("x.grad =", x.grad)\n'
Q7_PRINT = 'print("x.grad =", x.grad)\nprint("w.grad =", w.grad)\n'

#: Wrong answers: each loses the points of the part it gets wrong, and nothing else.
MISTAKES = [
    # ---------------------------------------------------------------- Q6
    _q6(
        "q6 forgot requires_grad on x",
        "x = torch.tensor([2.0])\ny = x**2 + 3 * x\ny.backward()\n" + Q6_PRINT,
        lost={"q6_gradient": 0},
        hints={"q6_gradient": "did you create x with requires_grad=True?"},
    ),
    _q6(
        "q6 integer tensor",
        "x = torch.tensor([2], requires_grad=True)\ny = x**2 + 3 * x\ny.backward()\n" + Q6_PRINT,
        lost={"q6_gradient": 0},
        hints={"q6_gradient": "write 2.0, not 2"},
    ),
    _q6(
        "q6 integer tensor made to require grad afterwards",
        "x = torch.tensor([2])\nx.requires_grad_()\ny = x**2 + 3 * x\ny.backward()\n" + Q6_PRINT,
        lost={"q6_gradient": 0},
        hints={"q6_gradient": "only floating-point tensors can require gradients"},
    ),
    _q6(
        "q6 gradient written by hand instead of backward",
        "x = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\nx.grad = torch.tensor([7.0])\n" + Q6_PRINT,
        lost={"q6_gradient": 0},
        hints={"q6_gradient": "call y.backward() instead of writing x.grad by hand"},
    ),
    _q6(
        "q6 y computed from x.data",
        "x = torch.tensor([2.0], requires_grad=True)\ny = x.data**2 + 3 * x.data\ny.backward()\n" + Q6_PRINT,
        lost={"q6_gradient": 0},
        hints={"q6_gradient": "not from x.data or x.detach()"},
    ),
    _q6(
        "q6 y computed from x.detach()",
        "x = torch.tensor([2.0], requires_grad=True)\ny = x.detach()**2 + 3 * x.detach()\ny.backward()\n" + Q6_PRINT,
        lost={"q6_gradient": 0},
        hints={"q6_gradient": "not from x.data or x.detach()"},
    ),
    _q6(
        "q6 wrong function x**2 + 3",
        "x = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3\ny.backward()\n" + Q6_PRINT,
        lost={"q6_gradient": 0},
        hints={"q6_gradient": "did you write 3*x?"},
    ),
    _q6(
        "q6 backward called twice",
        "x = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\ny.backward(retain_graph=True)\ny.backward()\n"
        + Q6_PRINT,
        lost={"q6_gradient": 0},
        hints={"q6_gradient": "did you call backward twice?"},
    ),
    _q6(
        "q6a analytic gradient 2*x (forgot +3)",
        answers={"q6a-answer": "def dy_dx(x):\n    return 2 * x\n"},
        lost={"q6a_analytic_gradient": 0},
        hints={"q6a_analytic_gradient": "did you forget + 3?"},
    ),
    _q6(
        "q6a analytic gradient right at x=2 only",
        answers={"q6a-answer": "def dy_dx(x):\n    return torch.full_like(x, 7.0)\n"},
        lost={"q6a_analytic_gradient": 0},
        hints={"q6a_analytic_gradient": "dy_dx is wrong at x=-3"},
    ),
    _q6(
        "q6b caught the wrong exception",
        answers={
            "q6b-answer": "x_frozen = torch.tensor([2.0])\ny_frozen = x_frozen**2 + 3 * x_frozen\ntry:\n"
            "    y_frozen.backward()\nexcept TypeError as error:\n    no_grad_error = error\n"
        },
        lost={"q6b_no_grad_error": 0},
        hints={"q6b_no_grad_error": "did you catch it as RuntimeError?"},
    ),
    _q6(
        "q6b believes x.grad just stays None",
        answers={
            "q6b-answer": "x_frozen = torch.tensor([2.0])\ny_frozen = x_frozen**2 + 3 * x_frozen\n"
            "no_grad_error = x_frozen.grad\n"
        },
        lost={"q6b_no_grad_error": 0},
        hints={"q6b_no_grad_error": "raises RuntimeError"},
    ),
    _q6(
        "q6c guessed that nothing is tracked",
        answers={
            "q6c-answer": "a = torch.tensor([2.0])\nb = torch.tensor([2.0], requires_grad=True) * 3\n"
            "with torch.no_grad():\n    c = torch.tensor([2.0], requires_grad=True) * 3\n"
            'tracked = {"a": False, "b": False, "c": False}\n'
        },
        lost={"q6c_tracking": 0},
        hints={"q6c_tracking": "also requires grad"},
    ),
    # ---------------------------------------------------------------- Q7
    Variant(
        "q7 forgot requires_grad on w",
        "q7_weights",
        {"q7-gradient-answer": "x = torch.tensor([2.0], requires_grad=True)\nw = torch.tensor([1.0, 3.0])\n"
         "y = w[0] * x**2 + w[1] * x\ny.backward()\n" + Q7_PRINT},
        lost={"q7_w_gradient": 0},
        hints={"q7_w_gradient": "create w with requires_grad=True"},
    ),
    Variant(
        "q7 forgot requires_grad on x",
        "q7_weights",
        {"q7-gradient-answer": "x = torch.tensor([2.0])\nw = torch.tensor([1.0, 3.0], requires_grad=True)\n"
         "y = w[0] * x**2 + w[1] * x\ny.backward()\n" + Q7_PRINT},
        lost={"q7_x_gradient": 0},
        hints={"q7_x_gradient": "did you create x with requires_grad=True?"},
    ),
    Variant(
        "q7 swapped the roles of w[0] and w[1]",
        "q7_weights",
        {"q7-gradient-answer": "x = torch.tensor([2.0], requires_grad=True)\n"
         "w = torch.tensor([1.0, 3.0], requires_grad=True)\ny = w[1] * x**2 + w[0] * x\ny.backward()\n" + Q7_PRINT},
        lost={"q7_x_gradient": 0, "q7_w_gradient": 0},
        hints={"q7_x_gradient": "swap the roles of w[0] and w[1]", "q7_w_gradient": "swap the roles of w[0] and w[1]"},
    ),
    Variant(
        "q7 backward called twice",
        "q7_weights",
        {"q7-gradient-answer": "x = torch.tensor([2.0], requires_grad=True)\n"
         "w = torch.tensor([1.0, 3.0], requires_grad=True)\ny = w[0] * x**2 + w[1] * x\n"
         "y.backward(retain_graph=True)\ny.backward()\n" + Q7_PRINT},
        lost={"q7_x_gradient": 0, "q7_w_gradient": 0},
        hints={"q7_x_gradient": "did you call backward twice?", "q7_w_gradient": "did you call backward twice?"},
    ),
    Variant(
        "q7 gradients written by hand",
        "q7_weights",
        {"q7-gradient-answer": "x = torch.tensor([2.0], requires_grad=True)\n"
         "w = torch.tensor([1.0, 3.0], requires_grad=True)\ny = w[0] * x**2 + w[1] * x\n"
         "x.grad = torch.tensor([7.0])\nw.grad = torch.tensor([4.0, 2.0])\n" + Q7_PRINT},
        lost={"q7_x_gradient": 0, "q7_w_gradient": 0},
        hints={"q7_x_gradient": "instead of writing .grad by hand", "q7_w_gradient": "instead of writing w.grad by hand"},
    ),
    Variant(
        "q7a gave w_a requires_grad",
        "q7_weights",
        {"q7a-answer": "x_a = torch.tensor([2.0], requires_grad=True)\nw_a = torch.tensor([1.0, 3.0], requires_grad=True)\n"
         "y_a = w_a[0] * x_a**2 + w_a[1] * x_a\ny_a.backward()\n"},
        lost={"q7a_untracked_weights": 0},
        hints={"q7a_untracked_weights": "w_a should be created without requires_grad"},
    ),
    Variant(
        "q7b swapped the weights in the formula",
        "q7_weights",
        {"q7b-answer": "def analytic_gradients(x, w):\n    return 2 * w[1] * x + w[0], torch.cat([x, x**2])\n"},
        lost={"q7b_analytic_gradients": 0},
        hints={"q7b_analytic_gradients": "did you swap w[0] and w[1]?"},
    ),
    # ---------------------------------------------------------------- Q8
    Variant(
        "q8 caught the wrong exception",
        "q8_breaking_the_graph",
        {"q8-error-answer": "x = torch.tensor([1.0], requires_grad=True)\ny = x * 3\nz = y.detach()\nw = z * 2\n"
         "try:\n    w.backward()\nexcept ValueError as error:\n    detach_error = error\n"},
        lost={"q8_detach_error": 0},
        hints={"q8_detach_error": "did you catch it as RuntimeError?"},
    ),
    Variant(
        "q8 made up the error instead of reproducing it",
        "q8_breaking_the_graph",
        {"q8-error-answer": "x = torch.tensor([1.0], requires_grad=True)\ny = x * 3\nz = y.detach()\nw = z * 2\n"
         'detach_error = RuntimeError("backward fails because z is detached")\n'},
        lost={"q8_detach_error": 0},
        hints={"q8_detach_error": "expected the error from w.backward()"},
    ),
    Variant(
        "q8 fix 1 still detaches",
        "q8_breaking_the_graph",
        {"q8-fix1-answer": "x1 = torch.tensor([1.0], requires_grad=True)\ny1 = x1 * 3\nw1 = y1.detach() * 2\n"
         "w1.backward()\n"},
        lost={"q8_fix_without_detach": 0},
        hints={"q8_fix_without_detach": "w1 has no grad_fn"},
    ),
    Variant(
        "q8 fix 2 with z.requires_grad_()",
        "q8_breaking_the_graph",
        {"q8-fix2-answer": "x2 = torch.tensor([1.0], requires_grad=True)\ny2 = x2 * 3\nz2 = y2.detach()\n"
         "z2.requires_grad_()\nw2 = z2 * 2\nw2.backward()\n"},
        lost={"q8_fix_with_clone": 0},
        hints={"q8_fix_with_clone": "only makes z2 a new leaf"},
    ),
    Variant(
        "q8 fix 2 without a copy",
        "q8_breaking_the_graph",
        {"q8-fix2-answer": "x2 = torch.tensor([1.0], requires_grad=True)\ny2 = x2 * 3\nz2 = y2\nw2 = z2 * 2\n"
         "w2.backward()\n"},
        lost={"q8_fix_with_clone": 0},
        hints={"q8_fix_with_clone": "z2 should be a copy of y2"},
    ),
    Variant(
        "q8 wrong fix without requires_grad_",
        "q8_breaking_the_graph",
        {"q8-wrong-fix-answer": "x3 = torch.tensor([1.0], requires_grad=True)\ny3 = x3 * 3\nz3 = y3.detach()\n"
         "w3 = z3 * 2\n"},
        lost={"q8_wrong_fix": 0},
        hints={"q8_wrong_fix": "z3 should be y3.detach() followed by z3.requires_grad_()"},
    ),
    # ---------------------------------------------------------------- Q9
    Variant(
        "q9 kept a reference to x.grad",
        "q9_gradient_accumulation",
        {"q9-accumulate-answer": "x = torch.tensor([1.0], requires_grad=True)\n(x * 2).backward()\n"
         "grad_after_first = x.grad\n(x * 3).backward()\ngrad_after_second = x.grad\n"},
        lost={"q9_accumulation": 0},
        hints={"q9_accumulation": "you stored a reference to x.grad"},
    ),
    Variant(
        "q9 forgot to reset between backward calls",
        "q9_gradient_accumulation",
        {"q9-reset-answer": "x_r = torch.tensor([1.0], requires_grad=True)\n(x_r * 2).backward()\n"
         "grad_before_reset = x_r.grad.clone()\ny2 = x_r * 3\ny2.backward()\ngrad_after_reset = x_r.grad.clone()\n"},
        lost={"q9_reset": 0},
        hints={"q9_reset": "reset x_r.grad between the two backward calls"},
    ),
    Variant(
        "q9 recorded y2.grad instead of x.grad",
        "q9_gradient_accumulation",
        {"q9-reset-answer": "x_r = torch.tensor([1.0], requires_grad=True)\n(x_r * 2).backward()\n"
         "grad_before_reset = x_r.grad.clone()\nx_r.grad.zero_()\ny2 = x_r * 3\ny2.backward()\n"
         "grad_after_reset = y2.grad\n"},
        lost={"q9_reset": 0},
        hints={"q9_reset": "y2.grad is always None"},
    ),
    Variant(
        "q9 expects zeros after optimizer.zero_grad()",
        "q9_gradient_accumulation",
        {"q9-optimizer-answer": "x_o = torch.tensor([1.0], requires_grad=True)\n"
         "optimizer = torch.optim.SGD([x_o], lr=0.1)\n(x_o * 2).backward()\ngrad_tensor_before = x_o.grad\n"
         "optimizer.zero_grad()\ngrad_after_zero_grad = torch.zeros(1)\n(x_o * 3).backward()\n"
         "grad_after_step = x_o.grad.clone()\n"},
        lost={"q9_zero_grad": 0},
        hints={"q9_zero_grad": "sets x_o.grad to None by default"},
    ),
    Variant(
        "q9 kept a reference after zero_grad(set_to_none=False)",
        "q9_gradient_accumulation",
        {"q9-optimizer-answer": "x_o = torch.tensor([1.0], requires_grad=True)\n"
         "optimizer = torch.optim.SGD([x_o], lr=0.1)\n(x_o * 2).backward()\ngrad_tensor_before = x_o.grad\n"
         "optimizer.zero_grad(set_to_none=False)\ngrad_after_zero_grad = x_o.grad\n(x_o * 3).backward()\n"
         "grad_after_step = x_o.grad.clone()\n"},
        lost={"q9_zero_grad": 0},
        hints={"q9_zero_grad": "you stored x_o.grad itself"},
    ),
    Variant(
        "q9 history never resets",
        "q9_gradient_accumulation",
        {"q9-function-answer": "def gradient_history(coefficients, reset):\n"
         "    x = torch.tensor([1.0], requires_grad=True)\n    history = []\n    for c in coefficients:\n"
         "        (c * x).backward()\n        history.append(x.grad.item())\n    return history\n"},
        lost={"q9_gradient_history": 0},
        hints={"q9_gradient_history": "reset x.grad before each backward when reset is true"},
    ),
    Variant(
        "q9 history keeps references to x.grad",
        "q9_gradient_accumulation",
        {"q9-function-answer": "def gradient_history(coefficients, reset):\n"
         "    x = torch.tensor([1.0], requires_grad=True)\n    history = []\n    for c in coefficients:\n"
         "        if reset and x.grad is not None:\n            x.grad.zero_()\n        (c * x).backward()\n"
         "        history.append(x.grad)\n    return history\n"},
        lost={"q9_gradient_history": 0},
        hints={"q9_gradient_history": "store x.grad.item() or a clone"},
    ),
]

#: Right answers written differently from the solution: each earns full marks.
ALTERNATIVES = [
    _q6("q6 requires_grad_() after creation",
        "x = torch.tensor([2.0]).requires_grad_()\ny = x**2 + 3 * x\ny.backward()\n" + Q6_PRINT),
    _q6("q6 y.sum().backward()", "x = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\ny.sum().backward()\n"),
    _q6("q6 backward with ones_like",
        "x = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\ny.backward(torch.ones_like(y))\n"),
    _q6("q6b catches Exception", answers={
        "q6b-answer": "x_frozen = torch.tensor([2.0])\ny_frozen = x_frozen**2 + 3 * x_frozen\ntry:\n"
        "    y_frozen.backward()\nexcept Exception as e:\n    no_grad_error = e\n"}),
    Variant("q7 vectorised", "q7_weights", {
        "q7-gradient-answer": "x = torch.tensor([2.0], requires_grad=True)\n"
        "w = torch.tensor([1.0, 3.0], requires_grad=True)\ny = (w * torch.stack([x**2, x]).flatten()).sum()\n"
        "y.backward()\n"}),
    Variant("q7b with torch.stack", "q7_weights", {
        "q7b-answer": "def analytic_gradients(x, w):\n    return 2 * w[0] * x + w[1], torch.stack([x[0] ** 2, x[0]])\n"}),
    Variant("q8 fix 2 with torch.clone", "q8_breaking_the_graph", {
        "q8-fix2-answer": "x2 = torch.tensor([1.0], requires_grad=True)\ny2 = x2 * 3\nz2 = torch.clone(y2)\n"
        "w2 = z2 * 2\nw2.backward()\n"}),
    Variant("q9 reset with x.grad = None", "q9_gradient_accumulation", {
        "q9-reset-answer": "x_r = torch.tensor([1.0], requires_grad=True)\n(x_r * 2).backward()\n"
        "grad_before_reset = x_r.grad.clone()\nx_r.grad = None\ny2 = x_r * 3\ny2.backward()\n"
        "grad_after_reset = x_r.grad.clone()\n"}),
    Variant("q9 zero_grad(set_to_none=False)", "q9_gradient_accumulation", {
        "q9-optimizer-answer": "x_o = torch.tensor([1.0], requires_grad=True)\n"
        "optimizer = torch.optim.SGD([x_o], lr=0.1)\n(x_o * 2).backward()\ngrad_tensor_before = x_o.grad\n"
        "optimizer.zero_grad(set_to_none=False)\ngrad_after_zero_grad = x_o.grad.clone()\n(x_o * 3).backward()\n"
        "grad_after_step = x_o.grad.clone()\n"}),
    Variant("q9 history of clones", "q9_gradient_accumulation", {
        "q9-function-answer": "def gradient_history(coefficients, reset):\n"
        "    x = torch.tensor([1.0], requires_grad=True)\n    history = []\n    for c in coefficients:\n"
        "        if reset:\n            x.grad = None\n        (c * x).backward()\n"
        "        history.append(x.grad.clone())\n    return history\n"}),
]

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
