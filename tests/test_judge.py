"""The judge and its sandboxed kernels on their own, on tiny notebooks: checks are decided outside the student's
process, on faithful copies of the student's objects, whatever the student's process says or does.

Each test sends a plan (code cells, some of them checks) to a warm judge, as the nbgrader executor does, and reads
the verdict: each cell's outputs, and the events that become grades.csv's status.
"""

from __future__ import annotations

import time

import pytest
from nbformat import from_dict
from nbgrader.utils import determine_grade

from autograd_course.judge.client import JudgeService
from autograd_course.sandbox.bwrap import python_dirs

pytestmark = pytest.mark.slow

SETUP = "import torch"
# What a fresh sandbox's /tmp holds: nothing, unless the Python installation itself lives under /tmp (a clone
# there, say), whose read-only mount then shows.
FRESH_TMP = sorted({path.split("/")[2] for path in python_dirs() if path.startswith("/tmp/")})


@pytest.fixture(scope="module")
def judge():
    service = JudgeService(sandboxed=True)
    service.start()
    yield service
    service.stop()


def run(judge, *cells, timeout=5.0, budget=None, output_limit=100_000):
    """Judge one notebook; cells are source strings (student code) or ("check", source)."""
    plan_cells = []
    for index, cell in enumerate(cells):
        is_test = isinstance(cell, tuple)
        plan_cells.append({"index": index, "name": f"cell{index}", "source": cell[1] if is_test else cell, "is_test": is_test})
    plan = {
        "cells": plan_cells,
        "cell_timeout": timeout,
        "budget": budget or timeout * len(cells) + 10,
        "output_limit": output_limit,
        "memory_mb": 2048,
    }
    verdict = judge.judge(plan)
    return Verdict(verdict)


class Verdict:
    def __init__(self, message) -> None:
        self.cells = [message["cells"][str(index)] for index in range(len(message["cells"]))]
        self.events = message["events"]

    def passed(self, index: int) -> bool:
        """What nbgrader gives a 1-point check with these outputs."""
        cell = from_dict({
            "cell_type": "code", "source": "", "execution_count": 1, "outputs": self.cells[index]["outputs"],
            "metadata": {"nbgrader": {"grade": True, "solution": False, "points": 1, "grade_id": "t"}},
        })
        return determine_grade(cell)[0] == 1

    def error(self, index: int) -> dict | None:
        errors = [output for output in self.cells[index]["outputs"] if output["output_type"] == "error"]
        return errors[-1] if errors else None

    def text(self, index: int) -> str:
        return "".join(output.get("text", "") for output in self.cells[index]["outputs"])

    def kinds(self) -> set[str]:
        return {event["kind"] for event in self.events}

    def details(self) -> str:
        return " | ".join(event["detail"] for event in self.events)


def judged_with_a_hidden_call(judge, student: str) -> Verdict:
    """``student``'s answer cell, then a check whose hidden lines call ``dy_dx`` on an input the student never saw."""
    source = ("import torch\nassert dy_dx(torch.tensor([2.0])).tolist() == [7.0]\n### BEGIN HIDDEN TESTS\n"
              "dy_dx(torch.tensor([-8.125]))\n### END HIDDEN TESTS")
    plan_cells = [
        {"index": 0, "name": "answer", "source": student, "is_test": False},
        {"index": 1, "name": "check", "source": source, "is_test": True, "hidden_lines": [3, 4, 5]},
    ]
    plan = {"cells": plan_cells, "cell_timeout": 5.0, "budget": 20.0, "output_limit": 100_000, "memory_mb": 2048}
    return Verdict(judge.judge(plan))


def check(source: str) -> tuple[str, str]:
    return ("check", source)


# ------------------------------------------------------------------------------------- as before
def test_a_warning_in_a_passing_check_does_not_cost_its_points(judge):
    # float() on a tensor that requires grad warns in torch; stock nbgrader scores such a cell 0.
    verdict = run(judge, "import torch\nx = torch.tensor([2.0], requires_grad=True)",
                  check("import warnings\nwarnings.warn('just so you know')\nassert float(x * 1) == 2.0"))
    assert verdict.passed(1)
    assert "just so you know" in verdict.text(1)


def test_stderr_printed_by_a_check_does_not_cost_its_points(judge):
    assert run(judge, check("import sys\nprint('note', file=sys.stderr)\nassert True")).passed(0)


def test_a_failing_check_fails_with_its_message(judge):
    verdict = run(judge, check("assert 1 == 2, 'one is not two'"))
    assert not verdict.passed(0)
    assert (verdict.error(0)["ename"], verdict.error(0)["evalue"]) == ("AssertionError", "one is not two")


def test_the_traceback_of_a_check_shows_no_check_source(judge):
    verdict = run(judge, check("secret_check = 41\nassert secret_check == 42, 'wrong answer'"))
    assert "secret_check" not in "".join(verdict.error(0)["traceback"])


def test_torch_imports_cleanly_with_numpy(judge):
    verdict = run(judge, "import numpy, torch\nprint(torch.tensor([1.0]).numpy().sum())")
    assert verdict.cells[0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "1.0\n"}]


def test_each_notebook_starts_clean(judge):
    leave = run(judge,
        "import torch, os\nleft_behind = 1\ntorch.secret = 2\nopen('/tmp/note.txt', 'w').write('x')\n"
        "os.makedirs('/tmp/locked/inner')\nopen('/tmp/locked/inner/f', 'w').write('x')\nos.mkfifo('/tmp/pipe')\n"
        "open('/dev/shm/shared', 'w').write('x')\nos.chdir('/tmp')\n"
        "for _ in range(2500):  # deeper than a path can name\n    os.mkdir('d')\n    os.chdir('d')\n"
        "open('bottom', 'w').write('x')\nos.chdir('/tmp')\n"
        "for path in ('/tmp/locked/inner', '/tmp/locked', '/tmp'):\n    try:\n        os.chmod(path, 0)\n"
        "    except PermissionError:\n        print('chmod denied')\n"
        "for path in ('/left.txt', '/dev/left', '/usr/left'):\n    try:\n        open(path, 'w')\n"
        "    except OSError as error:\n        print(error.strerror)")
    assert leave.text(0) == "chmod denied\n" * 3 + "Read-only file system\n" * 3, leave.cells[0]
    verdict = run(judge, "import os, torch\nprint('left_behind' in globals(), hasattr(torch, 'secret'), "
                         "sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')), oct(os.stat('/tmp').st_mode))")
    assert verdict.text(0) == f"False False {FRESH_TMP} [] 0o40755\n"


def test_a_notebook_cannot_reach_the_machine_or_the_zygote(judge):
    verdict = run(judge,
        "import ctypes, os, resource\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "class rlimit(ctypes.Structure):\n    _fields_ = [('cur', ctypes.c_ulong), ('max', ctypes.c_ulong)]\n"
        "print(libc.prlimit64(os.getppid(), resource.RLIMIT_FSIZE, ctypes.byref(rlimit(2**20, 2**20)), None))\n"
        "for path in ('/proc/sys/vm/swappiness', '/proc/sys/kernel/core_pattern'):\n    try:\n"
        "        open(path, 'w').write(open(path).read())\n        print('wrote', path)\n    except OSError as error:\n"
        "        print(error.strerror)\n"
        "try:\n    os.chmod('/dev/null', 0o666)\nexcept PermissionError:\n    print('chmod denied')")
    assert verdict.text(0) == "-1\nRead-only file system\nRead-only file system\nchmod denied\n", verdict.cells[0]
    assert run(judge, "print(open('/dev/null', 'w').write('fine'))").text(0) == "4\n"


def test_honest_code_is_not_reported_as_tampering(judge):
    verdict = run(judge,
        "import torch, math, copy\nx = torch.tensor([1.0], requires_grad=True)\nopt = torch.optim.SGD([x], lr=0.1)\n"
        "(x * 2).backward()\nstored = copy.copy(x.grad)\nopt.step()\nopt.zero_grad()\nimport torch.distributions\n"
        "import warnings\nwarnings.simplefilter('ignore')\nsum = 3\nmax = [1]\nabs = lambda v: 0\n"
        "torch.set_default_dtype(torch.float64)\nimport logging, gettext\nlogging.captureWarnings(True)\n"
        "gettext.install('course')\ndef dy_dx(x):\n    torch.set_default_dtype(torch.float32)\n    return 2 * x + 3",
        check("assert abs(-1) == 1 and len([sum]) == 1 and max([1, 2]) == 2"),
        check("import torch\nassert dy_dx(torch.tensor([2.0])).tolist() == [7.0]"))
    assert verdict.events == []
    assert verdict.passed(1) and verdict.passed(2), verdict.error(2)


# ------------------------------------------------------------------------ the verdict is the judge's
def test_a_check_sees_faithful_copies_of_the_students_objects(judge):
    verdict = run(judge,
        "import torch\nx = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\ny.backward()\n"
        "w = torch.nn.Parameter(torch.tensor([1.0, 3.0]))\nstored = x.grad\ncopied = x.grad.clone()\n"
        "z = y.detach()\nitems = [x, x, {'k': (1, 2.5, 'three', None, True)}]\nbig = 2**100\nc = 1 + 2j\n"
        "try:\n    torch.tensor([1.0]).backward()\nexcept RuntimeError as error:\n    caught = error\n"
        "class Box:\n    def __init__(self):\n        self.inside = torch.tensor([5.0])\nbox = Box()",
        check(
            "import torch, traceback\n"
            "assert type(x) is torch.Tensor and x.is_leaf and x.requires_grad and x.tolist() == [2.0]\n"
            "assert x.grad.tolist() == [7.0] and stored is x.grad and copied is not x.grad\n"
            "assert stored.data_ptr() == x.grad.data_ptr() and copied.data_ptr() != x.grad.data_ptr()\n"
            "assert not y.is_leaf and y.grad_fn is not None and y.grad_fn.name().startswith('Add')\n"
            "assert z.data_ptr() == y.data_ptr() and not z.requires_grad and z.grad_fn is None\n"
            "assert type(w) is torch.nn.Parameter and w.requires_grad and w.tolist() == [1.0, 3.0]\n"
            "assert items[0] is items[1] is x and items[2] == {'k': (1, 2.5, 'three', None, True)}\n"
            "assert big == 2**100 and c == 1 + 2j\n"
            "assert type(caught) is RuntimeError and 'does not require grad' in str(caught)\n"
            "assert traceback.extract_tb(caught.__traceback__)[-1].name == '_engine_run_backward'\n"
            "assert repr(box).startswith('<__main__.Box object') and box.inside.tolist() == [5.0]\n"
        ))
    assert verdict.passed(1), verdict.error(1)


def test_a_graph_that_was_run_backward_is_consumed_for_the_check_too(judge):
    probe = check(
        "import torch\ntry:\n    torch.autograd.grad(y.sum(), x, retain_graph=True)\n    used = False\n"
        "except RuntimeError:\n    used = True\nassert used, 'never run backward'")
    ran = run(judge, "import torch\nx = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\ny.backward()", probe)
    never = run(judge, "import torch\nx = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\nx.grad = torch.tensor([7.0])", probe)
    assert ran.passed(1) and not never.passed(1)
    gradient = run(judge, "import torch\nx = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x",
                   check("import torch\n(g,) = torch.autograd.grad(y.sum(), x)\nassert g.tolist() == [7.0], g"))
    assert gradient.passed(1), gradient.error(1)


def test_a_check_calls_the_students_functions_with_its_own_inputs(judge):
    verdict = run(judge,
        "import torch\ndef dy_dx(x):\n    return 2 * x + 3\ndef pair(x):\n    return x, [x.sum().item()]\n"
        "def needs_grad(x):\n    y = (x.clone().requires_grad_() ** 2).sum()\n    y.backward()\n    return 1",
        check("import torch\nresult = dy_dx(torch.tensor([-1.5, 0.0, 4.0]))\n"
              "assert isinstance(result, torch.Tensor) and result.tolist() == [0.0, 3.0, 11.0]\n"
              "a, b = pair(torch.tensor([1.0, 2.0]))\nassert a.tolist() == [1.0, 2.0] and b == [3.0]\n"
              "with torch.no_grad():\n    try:\n        needs_grad(torch.tensor([1.0]))\n        ok = True\n"
              "    except RuntimeError:\n        ok = False\nassert not ok, 'grad mode reaches the student function'"))
    assert verdict.passed(1), verdict.error(1)


def test_a_check_never_reaches_the_students_process(judge):
    # The check's hidden line is in the judge only: the student's process finds it nowhere in its own memory,
    # whatever it runs after the check.
    scan = (
        "import re\nfound = 0\nneedle = re.compile(rb'HIDDEN_CHECK_MARKER_' + rb'[0-9]{6}')\n"
        "with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "    for line in maps:\n        span, perms = line.split()[:2]\n        if 'r' not in perms:\n            continue\n"
        "        start, end = (int(part, 16) for part in span.split('-'))\n        try:\n            mem.seek(start)\n"
        "            found += len(needle.findall(mem.read(end - start)))\n        except (OSError, ValueError, OverflowError):\n"
        "            pass\nprint('found', found)")
    verdict = run(judge, "import torch\nvalue = 3", check("assert value == 3  # HIDDEN_CHECK_MARKER_424242"), scan)
    assert verdict.passed(1)
    assert verdict.text(2) == "found 0\n"


def test_nothing_of_an_earlier_notebook_is_in_the_next_ones_memory(judge):
    run(judge, "print('EARLIER_' + 'NOTEBOOK_' + '777777')\nkept = 'EARLIER_' + 'NOTEBOOK_' + '888888'")
    scan = (
        "import re\nfound = 0\nneedle = re.compile(rb'EARLIER_NOTEBOOK_' + rb'[0-9]{6}')\n"
        "with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "    for line in maps:\n        span, perms = line.split()[:2]\n        if 'r' not in perms:\n            continue\n"
        "        start, end = (int(part, 16) for part in span.split('-'))\n        try:\n            mem.seek(start)\n"
        "            found += len(needle.findall(mem.read(end - start)))\n        except (OSError, ValueError, OverflowError):\n"
        "            pass\nprint('found', found)")
    assert run(judge, scan).text(0) == "found 0\n"


def test_forged_replies_cannot_pass_a_check(judge):
    forge = (
        "import os, json, struct\nfor seq in range(1, 40):\n"
        "    for reply in ({'seq': seq, 'outputs': [], 'events': []}, {'seq': seq, 'names': []},\n"
        "                  {'seq': seq, 'values': {'root': True, 'objects': []}, 'events': []}):\n"
        "        data = json.dumps(reply).encode()\n        for fd in range(3, 64):\n"
        "            try:\n                os.write(fd, struct.pack('>I', len(data)) + data)\n"
        "            except OSError:\n                pass")
    verdict = run(judge, "value = 2", forge, check("assert value == 3, 'wrong'"), check("assert value == 2"))
    assert not verdict.passed(2)
    assert "tampered" in verdict.kinds()


def test_patching_the_kernel_cannot_make_a_wrong_value_compare_equal(judge):
    verdict = run(judge,
        "import torch, builtins, math\nx = torch.tensor([4.0])\ntorch.Tensor.tolist = lambda self: [7.0]\n"
        "torch.Tensor.__eq__ = lambda self, other: True\ntorch.allclose = lambda *a, **k: True\n"
        "builtins.isinstance = lambda *a: True\nmath.isclose = lambda *a, **k: True",
        check("import torch, math\nassert x.tolist() == [7.0]"),
        check("import torch\nassert torch.allclose(x, torch.tensor([7.0]))"),
        check("import torch\nassert (x == 7).all()"))
    assert not any(verdict.passed(index) for index in (1, 2, 3))
    assert "torch.Tensor.tolist was added" in verdict.details()


def test_objects_that_only_claim_to_be_tensors_are_not_tensors(judge):
    verdict = run(judge,
        "import torch\nclass Fake:\n    __class__ = property(lambda self: torch.Tensor)\n    requires_grad = True\n"
        "    def tolist(self):\n        return [7.0]\nx = Fake()",
        check("import torch\nassert isinstance(x, torch.Tensor), 'not a tensor'"))
    assert not verdict.passed(1)
    assert verdict.error(1)["evalue"] == "not a tensor"


def test_a_check_during_which_the_kernel_is_patched_earns_nothing(judge):
    verdict = run(judge,
        "import torch\ndef dy_dx(x):\n    torch.Tensor.__add__ = lambda self, other: self\n    return 2 * x + 3",
        check("import torch\nresult = dy_dx(torch.tensor([2.0]))\nassert result.tolist() == [7.0]"))
    assert not verdict.passed(1)
    assert verdict.error(1)["ename"] == "TamperedError"
    assert "tampered" in verdict.kinds()


# ------------------------------------------------------------------------------------ time and size
def test_the_judge_stops_a_student_function_that_never_returns(judge):
    verdict = run(judge,
        "def dy_dx(x):\n    import time\n    while True:\n        try:\n            time.sleep(10)\n"
        "        except BaseException:\n            pass",
        check("dy_dx(1.0)"), "after = 1", check("assert after == 1"), timeout=1.0)
    assert verdict.error(1)["ename"] == "CellTimeoutError"
    assert verdict.passed(3)
    assert "timeout" in verdict.kinds()


def test_a_cell_that_ignores_its_alarm_is_killed_and_the_rest_still_counts(judge):
    verdict = run(judge,
        "value = 1", "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except BaseException:\n        pass",
        check("assert value == 1"), timeout=1.0)
    assert verdict.error(1)["ename"] == "CellTimeoutError"
    assert verdict.passed(2)


def test_a_notebook_cannot_stretch_its_time_with_added_cells(judge):
    slow = "import time\ntime.sleep(0.8)"
    verdict = run(judge, "value = 1", *[slow] * 8, check("assert value == 1"), timeout=1.0, budget=3.0)
    assert not verdict.passed(9)
    assert verdict.error(9)["ename"] == "NotExecuted"
    assert "time limit (3 s) ran out" in verdict.details()


def test_a_crash_is_recorded_and_the_cells_before_it_are_replayed(judge):
    verdict = run(judge, "import torch\nx = torch.tensor([1.0])", "import os\nos._exit(3)", check("assert x.tolist() == [1.0]"))
    assert verdict.error(1)["ename"] == "KernelDied"
    assert verdict.passed(2)
    assert "crashed" in verdict.kinds()


def test_every_output_counts_against_one_cap(judge):
    verdict = run(judge, "print('x' * 30_000)", "raise ValueError('y' * 30_000)", "import warnings\nwarnings.warn('z' * 30_000)",
                  check("assert True"), output_limit=50_000)
    total = sum(len(str(output)) for cell in verdict.cells for output in cell["outputs"])
    assert total < 60_000
    assert "resource_limit" in verdict.kinds()
    assert verdict.passed(3)


def test_a_check_reads_at_most_its_value_limit(judge):
    verdict = run(judge, "import torch\nx = torch.zeros(20_000_000)", check("assert x.sum() == 0"))
    assert verdict.error(1)["ename"] == "ResourceLimitError"
    assert "resource_limit" in verdict.kinds()


def test_state_cannot_pass_between_notebooks_through_ipc(judge):
    verdict = run(judge,
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.shmget(1234, 4096, 0o1666), "
        "libc.msgget(1234, 0o1666), libc.semget(1234, 1, 0o1666))")
    assert verdict.text(0) == "-1 -1 -1\n"


def test_a_tiny_storage_viewed_as_a_huge_tensor_is_not_copied(judge):
    verdict = run(judge, "import torch\nx = torch.zeros(1).expand(2**40)", check("assert x.sum() == 0"))
    assert verdict.error(1)["ename"] == "ResourceLimitError"


def test_the_student_learns_only_which_of_their_names_a_check_reads(judge):
    # A student object notices when the kernel describes it (its repr is asked for): only the name the check reads
    # as a variable is described, not the names of attributes it uses nor the names it defines itself.
    verdict = run(judge,
        "seen = []\nclass Spy:\n    def __init__(self, name):\n        self.name = name\n"
        "    def __repr__(self):\n        seen.append(self.name)\n        return 'spy'\n"
        "for name in ('tolist', 'detach', 'graph_was_used', 'helper', 'probe_me'):\n    globals()[name] = Spy(name)",
        check("import torch\ngraph_was_used = True\ndef helper():\n    return probe_me\n"
              "assert repr(helper()) == 'spy' and torch.tensor([1.0]).detach().tolist() == [1.0]"),
        "print(sorted(set(seen)))")
    assert verdict.passed(1), verdict.error(1)
    assert verdict.text(2) == "['probe_me']\n"


def test_a_traceback_never_shows_a_file_the_student_names(judge, tmp_path):
    # A frame can claim any file name; the judge shows the line the kernel saw, never reads the file itself.
    secret = tmp_path / "instructor_notes.py"
    secret.write_text("first line\nINSTRUCTOR_SECRET_LINE = 1\n")
    verdict = run(judge,
        f"exec(compile('\\n' + 'def dy_dx(x):\\n    raise ValueError(\"boom\")', {str(secret)!r}, 'exec'))",
        check("dy_dx(1.0)"))
    error = verdict.error(1)
    assert error["ename"] == "ValueError" and error["evalue"] == "boom"
    shown = "".join(error["traceback"])
    assert str(secret) in shown and ", line 3, in dy_dx" in shown
    assert "INSTRUCTOR_SECRET_LINE" not in shown


def test_the_value_of_a_cells_last_expression_is_shown_as_jupyter_shows_it(judge):
    import nbformat

    verdict = run(judge, "x = 41", "x + 1", check("x"))
    notebook = nbformat.v4.new_notebook()
    for index in (1, 2):
        result = verdict.cells[index]["outputs"][-1]
        assert result["output_type"] == "execute_result" and result["execution_count"] == verdict.cells[index]["execution_count"]
        cell = nbformat.v4.new_code_cell(execution_count=result["execution_count"])
        cell.outputs = [nbformat.from_dict(result)]
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    assert verdict.cells[1]["outputs"][-1]["data"]["text/plain"] == "42"


def test_what_a_check_passes_to_student_code_never_comes_back_later(judge):
    # The student's function keeps its hidden inputs; nothing after the check ever sees them, neither a later
    # cell's output nor the message of a later check.
    verdict = run(judge,
        "import torch\nseen = []\ndef dy_dx(x):\n    seen.append(x.tolist())\n    return 2 * x + 3",
        check("import torch\nassert dy_dx(torch.tensor([-4.25, 9.5])).tolist() == [-5.5, 22.0]"),
        "print('seen', seen)",
        check("assert seen == [], f'seen is {seen}'"))
    assert verdict.passed(1) and verdict.passed(3), verdict.error(3)
    assert verdict.text(2) == "seen []\n"


def test_a_check_can_tell_a_backward_call_from_a_gradient_written_by_hand(judge):
    probe = check("assert y.grad_fn.metadata.get('backward_calls', 0) == 1, 'y.backward() was not called once'")
    setup = "import torch\nx = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\n"
    assert run(judge, setup + "y.backward()", probe).passed(1)
    assert run(judge, setup + "y.backward(retain_graph=True)", probe).passed(1)
    assert run(judge, setup + "torch.autograd.backward([y])", probe).passed(1)
    assert run(judge, setup + "y.sum().backward()", probe).passed(1)
    assert run(judge, setup + "loss = y[0]\nloss.backward()", probe).passed(1)
    assert not run(judge, setup + "x.grad = 2 * x.detach() + 3", probe).passed(1)
    assert not run(judge, setup + "x.grad = 2 * x.detach() + 3\ny.grad_fn.metadata['backward_calls'] = 1", probe).passed(1)
    assert not run(judge, setup + "y.backward(retain_graph=True)\ny.backward()", probe).passed(1)


def test_an_exception_a_hidden_call_provokes_carries_nothing_of_it(judge):
    # The student's function records its inputs and raises them, in its message and in its class name.
    student = (
        "import torch\ncalls = []\ndef dy_dx(x):\n    calls.append(x.tolist())\n    if len(calls) == 2:\n"
        "        raise type('Leak_' + str(len(calls)), (ValueError,), {})('inputs: ' + repr(calls))\n"
        "    return 2 * x + 3")
    verdict = judged_with_a_hidden_call(judge, student)
    error = verdict.error(1)
    assert (error["ename"], error["evalue"]) == ("ValueError", "raised by your code while a hidden part of this check ran it")
    assert "8.125" not in str(verdict.cells[1]) and "Leak" not in str(verdict.cells[1])


def test_honest_uses_of_the_machine_still_work(judge):
    verdict = run(judge,
        "import torch, os, resource, warnings, socket\ntorch.set_num_threads(2)\na = torch.ones(512, 512)\n"
        "print((a @ a).sum().item())\nos.nice(0)\nos.sched_setaffinity(os.getpid(), os.sched_getaffinity(0))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] > 0)\nwarnings.showwarning = lambda *args, **kwargs: None\n"
        "warnings.warn('quiet')\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM).close()\nprint('ok')",
        check("assert True"))
    assert verdict.text(0) == "134217728.0\nTrue\nok\n", verdict.cells[0]
    assert verdict.events == [] and verdict.passed(1)


def test_a_notebook_cannot_leave_settings_for_the_next(judge):
    verdict = run(judge,
        "import os, socket\nfor path in ('/proc/self/oom_score_adj', '/proc/self/autogroup', '/proc/1/oom_score_adj'):\n"
        "    try:\n        open(path, 'w').write('1')\n        print('wrote', path)\n    except OSError as error:\n"
        "        print(error.strerror)\n"
        "try:\n    socket.socket(40, socket.SOCK_STREAM)\n    print('vsock')\nexcept OSError as error:\n    print(error.strerror)")
    assert verdict.text(0) == "Read-only file system\n" * 3 + "Operation not permitted\n", verdict.cells[0]


def test_a_wide_tree_left_in_tmp_is_removed_in_time(judge):
    # Emptying /tmp reads each folder once: twenty thousand folders, each with a file, take a second, not minutes.
    verdict = run(judge,
        "import os\nos.chdir('/tmp')\nfor index in range(20_000):\n    os.mkdir(f'd{index}')\n"
        "    open(f'd{index}/f', 'w').close()\nvalue = 1", check("assert value == 1"), timeout=20.0)
    assert verdict.passed(1)
    assert run(judge, "import os\nprint(sorted(os.listdir('/tmp')))").text(0) == f"{FRESH_TMP}\n"


# ------------------------------------------------------------------------------------- review 3
PATCHED_FETCH = (
    "import sys, torch\nkernel = sys._getframe().f_back.f_locals['self']\noriginal_fetch = kernel.ops['fetch']\n"
    "def fetch(request):\n    return original_fetch(dict(request, names=list(request['names']) + {extra!r}))\n"
    "kernel.ops['fetch'] = fetch\n"
    "def zip(*args):\n    return []\ndef abs(value):\n    return 0.0\n"
    "def dy_dx(x):\n    return torch.zeros_like(x)  # wrong\n"
)
ZIP_CHECK = check(
    "import torch\ngot = dy_dx(torch.tensor([-3.0, 0.0, 2.0])).tolist()\nexpected = [-3.0, 3.0, 7.0]\n"
    "assert len(got) == 3 and all(abs(g - e) <= 1e-5 for g, e in zip(got, expected)), 'wrong'")


def test_a_kernel_cannot_slip_its_own_builtins_into_a_check(judge):
    verdict = run(judge, PATCHED_FETCH.format(extra=["zip", "abs"]), ZIP_CHECK)
    assert not verdict.passed(1)
    assert "tampered" in verdict.kinds()
    verdict = run(judge, PATCHED_FETCH.format(extra=["__builtins__"]) + "__builtins__ = {'all': lambda g: True}",
                  ZIP_CHECK)
    assert not verdict.passed(1)


def test_a_students_function_cannot_replace_a_helper_an_earlier_check_defined(judge):
    verdict = run(judge,
        "def close(got, expected):\n    return True\nvalue = 2",
        check("def close(got, expected):\n    return abs(got - expected) < 1e-6\nassert close(value, 2)"),
        check("assert close(value, 3), 'wrong'"))
    assert verdict.passed(1) and not verdict.passed(2)
    # nor a module an earlier check imported
    verdict = run(judge,
        "class Fake:\n    def isclose(self, a, b):\n        return True\nmath = Fake()\nvalue = 2",
        check("import math\nassert math.isclose(value, 2)"),
        check("assert math.isclose(value, 3), 'wrong'"))
    assert verdict.passed(1) and not verdict.passed(2)


def test_rebuilding_the_values_a_check_reads_is_bounded_by_the_checks_time(judge):
    # Each frame of a traceback costs the judge a compile: 150 KB of exceptions took 10 s to rebuild, past any
    # deadline, and 64 MiB would have held a grading worker until the judge was killed.
    flood = (
        "import sys\nkernel = sys._getframe().f_back.f_locals['self']\n"
        "error = {'k': 'exception', 'name': 'RuntimeError', 'bases': ['RuntimeError'], 'module': 'builtins',\n"
        "         'message': '', 'args': [], 'traceback': [['f.py', 100000, 'g', 'x']] * 32}\n"
        "objects = [{'k': 'dict', 'items': [['value', {'$': 1}]]}, {'k': 'list', 'items': [{'$': i + 2} for i in range(400)]}]\n"
        "objects += [error] * 400\n"
        "kernel.ops['fetch'] = lambda request: {'values': {'root': {'$': 0}, 'objects': objects}}\nvalue = 1")
    started = time.monotonic()
    verdict = run(judge, flood, check("assert value == 1"), "print('after')", timeout=1.0)
    assert time.monotonic() - started < 20
    assert verdict.error(1)["ename"] == "CellTimeoutError"
    assert verdict.text(2) == "after\n"


def test_an_exception_reported_without_frames_is_still_the_students(judge):
    # With traceback.walk_tb broken the kernel reports no frames: the judge must not take the error for its own.
    student = (
        "import torch, traceback\ntraceback.walk_tb = None\ncalls = []\ndef dy_dx(x):\n    calls.append(x.tolist())\n"
        "    if len(calls) == 2:\n        raise type('Leak', (ValueError,), {})('inputs: ' + repr(calls))\n    return 2 * x + 3")
    verdict = judged_with_a_hidden_call(judge, student)
    assert verdict.error(1)["evalue"] == "raised by your code while a hidden part of this check ran it"
    assert "8.125" not in str(verdict.cells[1]) and "Leak" not in str(verdict.cells[1])
    # and an exception that was never raised still has no traceback in the check
    verdict = run(judge, "error = RuntimeError('made up')", check("assert error.__traceback__ is None"))
    assert verdict.passed(1)


def test_a_student_function_cannot_end_a_checks_iteration_early(judge):
    # StopIteration raised through map() would end the list early: zip() then compares nothing.
    verdict = run(judge,
        "import torch\ndef dy_dx(x):\n    raise StopIteration",
        check("import torch\npoints = [torch.tensor([1.0]), torch.tensor([2.0])]\n"
              "got = list(map(dy_dx, points))\nassert all(g.tolist() == [2 * p.item() + 3] for g, p in zip(got, points))"))
    assert not verdict.passed(1)
    assert verdict.error(1)["ename"] == "RuntimeError"


def test_a_huge_range_cannot_hold_the_judge_beyond_the_checks_time(judge):
    # torch.as_tensor(range(10**12)) loops in C, where the check's alarm cannot stop it.
    started = time.monotonic()
    verdict = run(judge,
        "def analytic_gradients(x, w):\n    return range(10**12), range(2)",
        check("import torch\nresult = analytic_gradients(torch.tensor([2.0]), torch.tensor([1.0, 3.0]))\n"
              "assert torch.as_tensor(result[0]).flatten().tolist() == [7.0]"),
        timeout=1.0, budget=3.0)
    assert time.monotonic() - started < 20
    assert verdict.error(1)["ename"] == "ResourceLimitError"


def test_shared_parts_cannot_make_a_small_value_too_large_to_convert(judge):
    # Forty lists that convert as 2**40 numbers: torch.as_tensor walks them in C, out of the check's alarm, and
    # held the judge until it was killed.
    started = time.monotonic()
    verdict = run(judge,
        "def analytic_gradients(x, w):\n    rows = [0.0]\n    for _ in range(40):\n        rows = [rows, rows]\n"
        "    return rows, [x, x]",
        check("import torch\nresult = analytic_gradients(torch.tensor([2.0]), torch.tensor([1.0, 3.0]))\n"
              "assert torch.as_tensor(result[0]).flatten().tolist() == [7.0]"),
        timeout=1.0, budget=3.0)
    assert time.monotonic() - started < 20
    assert verdict.error(1)["ename"] == "ResourceLimitError"
