"""The student notebooks in release/ run anywhere a student has Jupyter and torch.

The requirement: a release notebook runs in a plain Jupyter with torch installed (JupyterLab, Notebook 7, a
hosted notebook service), imports nothing from this repository, runs top to bottom on a CPU in a few seconds,
and does not assume a GPU (and runs on one where there is one).

* Statically, from the notebook files: valid nbformat 4 with a standard ``python3`` kernelspec; code cells are
  plain Python (no IPython magics or shell escapes, which not every front end runs); every import is ``torch`` or
  the standard library; no cell names a file of this repository; no cell pins a device.
* Dynamically: each notebook, with the instructor's answers typed into its answer cells, is copied alone into a
  temporary folder outside the repository and run by nbclient in the stock ``python3`` Jupyter kernel with that
  folder as its working directory. Every cell must run without an error and without writing to stderr, in a
  few seconds. The untouched notebook also runs top to bottom (``allow_errors``), and its only errors are the
  ``NotImplementedError`` of the unanswered cells and the failed checks that follow from them.
* The solved notebooks run once more in the same kernel without numpy, which neither torch nor Jupyter
  installs (``pip install jupyterlab torch`` has none): every cell must still run without an error, and
  without torch's "Failed to initialize NumPy" warning on stderr (the setup cells filter it).

About "nothing from this repository is importable": the course package is installed in the test environment
in editable mode (``pip install -e .``), whose import hook would make ``autograd_course`` importable from any
working directory, so a kernel merely started elsewhere is not the student's plain Jupyter. The kernel is given
a ``sitecustomize`` (on PYTHONPATH, in its own temporary folder) that removes that hook and any path into the
repository outside the Python installation; a probe run after the notebook in the same kernel checks that
``autograd_course`` cannot be imported and that no loaded module comes from the repository.

About GPUs: there is no GPU here and none is faked. Every tensor in the notebooks is created on torch's default
device (no ``device=``, ``.to(...)``, ``.cuda()``, ``.cpu()`` or ``set_default_device`` anywhere, checked
below), and the checks compare plain Python values (``.tolist()``, ``.item()``), so on a machine with a GPU the
notebooks run unchanged on whatever the default device is. What is asserted here is that absence of device
pinning, not a run on a GPU.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import sysconfig
import time
from datetime import datetime
from pathlib import Path

import nbclient
import nbformat
import pytest

from autograd_course.catalog import solved, submission
from autograd_course.course import Course

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
COURSE = Course.at(REPO)
NOTEBOOK_IDS = sorted(path.stem for path in COURSE.release_dir.glob("*.ipynb"))

KERNEL_WALL_LIMIT = 20.0  # seconds for a whole kernel run: start, every cell, shut down
CELLS_LIMIT = 10.0  # seconds for the notebook's cells themselves, as the kernel timed them

ALLOWED_THIRD_PARTY = {"torch"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
# Names that pin a computation to a device, or ask which one there is.
DEVICE_ATTRIBUTES = {"cuda", "cpu", "mps", "xpu", "to", "device", "set_default_device", "get_default_device"}
DEVICE_STRINGS = ("cuda", "mps", "xpu", "cpu", "gpu")
# String constants that would reach for this repository's files.
REPOSITORY_STRINGS = ("autograd_course", "grader_config", "nbgrader", "source/", "release/", ".ipynb", ".py")


def _meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _name(cell) -> str:
    return _meta(cell).get("grade_id") or cell.get("id") or "a cell"


def _is_answer(cell) -> bool:
    return bool(_meta(cell).get("solution"))


def _is_check(cell) -> bool:
    return bool(_meta(cell).get("grade")) and not _is_answer(cell)


def _release(notebook_id: str) -> nbformat.NotebookNode:
    return nbformat.read(COURSE.release_dir / f"{notebook_id}.ipynb", 4)


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


# --- static -----------------------------------------------------------------------------------------


def test_there_are_release_notebooks():
    assert COURSE.notebook_ids == NOTEBOOK_IDS, "release/ and source/ should hold the same notebooks"
    assert len(NOTEBOOK_IDS) == 4


@pytest.mark.parametrize("notebook_id", NOTEBOOK_IDS)
def test_release_notebook_is_a_standard_python3_notebook(notebook_id):
    nb = _release(notebook_id)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.nbformat_minor >= 5, "JupyterLab and Notebook 7 want nbformat 4.5 (cell ids)"
    kernelspec = nb.metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3" and kernelspec.get("language") == "python", kernelspec


def import_problems(nb) -> list[str]:
    """Why a notebook would not run in a plain Jupyter with only torch installed (empty: it would)."""
    problems = []
    for cell in _code_cells(nb):
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as error:  # IPython magics (%...) and shell escapes (!...) land here too
            problems.append(f"{_name(cell)}: not plain Python: {error}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] if node.level == 0 else [f"(relative import, level {node.level})"]
            elif isinstance(node, ast.Call) and (
                getattr(node.func, "id", None) == "__import__" or getattr(node.func, "attr", None) == "import_module"
            ):
                problems.append(f"{_name(cell)}: dynamic import at line {node.lineno}")
                continue
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found = [s for s in REPOSITORY_STRINGS if s in node.value]
                if found:
                    problems.append(f"{_name(cell)}: string {node.value!r} names repository files ({found})")
                continue
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in ALLOWED_THIRD_PARTY and top not in STDLIB:
                    problems.append(f"{_name(cell)}: imports {module!r}, which is neither torch nor the standard library")
    return problems


def device_problems(nb) -> list[str]:
    """Where a notebook names a device, moves a tensor or asks for a GPU (empty: tensors stay on the default
    device)."""
    problems = []
    for cell in _code_cells(nb):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Attribute) and node.attr in DEVICE_ATTRIBUTES:
                problems.append(f"{_name(cell)} line {node.lineno}: .{node.attr}")
            elif isinstance(node, ast.keyword) and node.arg == "device":
                problems.append(f"{_name(cell)} line {node.value.lineno}: device= argument")
            elif isinstance(node, ast.Name) and node.id in {"device", "cuda"}:
                problems.append(f"{_name(cell)} line {node.lineno}: name {node.id!r}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                lowered = node.value.lower()
                if any(token == word or token.startswith(word + ":") for word in DEVICE_STRINGS for token in _words(lowered)):
                    problems.append(f"{_name(cell)} line {node.lineno}: string {node.value!r} names a device")
    return problems


@pytest.mark.parametrize("notebook_id", NOTEBOOK_IDS)
def test_release_notebook_imports_only_torch_and_the_standard_library(notebook_id):
    problems = import_problems(_release(notebook_id))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook_id", NOTEBOOK_IDS)
def test_release_notebook_pins_no_device(notebook_id):
    """Tensors are created on torch's default device: nothing names a device, moves a tensor or asks for a GPU."""
    problems = device_problems(_release(notebook_id))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "code, finds_import, finds_device",
    [
        ("import numpy as np", True, False),
        ("from autograd_course.catalog import solved", True, False),
        ("from . import helpers", True, False),
        ("import importlib\nhelpers = importlib.import_module('helpers')", True, False),
        ("exec(open('../../grader_config.py').read())", True, False),
        ("%pip install torch", True, False),
        ("!nvidia-smi", True, False),
        ("x = torch.tensor([2.0]).cuda()", False, True),
        ("x = torch.tensor([2.0], device='cuda:0')", False, True),
        ("device = 'cuda' if torch.cuda.is_available() else 'cpu'\nx = torch.ones(1).to(device)", False, True),
        ("x = torch.ones(1).to('mps')", False, True),
        ("torch.set_default_device('cuda')", False, True),
        ("import math, warnings, collections.abc\nimport torch.nn.functional as F\nx = torch.ones(1) * math.pi", False, False),
        ("assert x.grad is not None, 'did you call backward twice? compute it on paper'", False, False),
    ],
)
def test_the_static_checks_catch_what_they_look_for(code, finds_import, finds_device):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    assert bool(import_problems(nb)) == finds_import, import_problems(nb)
    if not code.startswith(("%", "!")):
        assert bool(device_problems(nb)) == finds_device, device_problems(nb)


def _words(text: str) -> list[str]:
    return "".join(ch if ch.isalnum() or ch == ":" else " " for ch in text).split()


# --- running in a plain kernel ---------------------------------------------------------------------

SITECUSTOMIZE = '''\
"""Make this kernel a plain Jupyter kernel: the course repository is not installed here."""
import os, sys
_REPO = {repo!r}
_PREFIXES = tuple(os.path.realpath(p) for p in {{sys.prefix, sys.base_prefix, sys.exec_prefix}})

def _in_repo(path):
    path = os.path.realpath(path or os.getcwd())
    inside = path == _REPO or path.startswith(_REPO + os.sep)
    return inside and not any(path == p or path.startswith(p + os.sep) for p in _PREFIXES)

def _editable(hook):
    return (getattr(hook, "__module__", "") or "").startswith("__editable__")

sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not _editable(h)]
sys.path[:] = [p for p in sys.path if "__editable__" not in p and not _in_repo(p)]
# Optionally, a site-packages folder is replaced by a copy of it (symbolic links) without some packages.
_REPLACED = {replaced!r}
sys.path[:] = [_REPLACED.get(os.path.realpath(p), p) for p in sys.path]
sys.path_importer_cache.clear()
'''

PROBE = '''\
import json as _json, os as _os, sys as _sys
_repo = {repo!r}
_prefixes = tuple(_os.path.realpath(p) for p in {{_sys.prefix, _sys.base_prefix, _sys.exec_prefix}})
def _from_repo(path):
    path = _os.path.realpath(path)
    return (path == _repo or path.startswith(_repo + _os.sep)) and not any(path.startswith(p + _os.sep) for p in _prefixes)
try:
    import autograd_course
    _importable = getattr(autograd_course, "__file__", repr(autograd_course))
except ImportError:
    _importable = None
import importlib.util as _util
print(_json.dumps({{
    "numpy": _util.find_spec("numpy") is not None,
    "cwd": _os.getcwd(),
    "autograd_course": _importable,
    "modules_from_repo": sorted(n for n, m in list(_sys.modules.items())
                                if isinstance(getattr(m, "__file__", None), str) and _from_repo(m.__file__)),
    "sys_path_in_repo": [p for p in _sys.path if p and _from_repo(p)],
}}))
'''


def _cell_seconds(cell) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def site_packages_without(tmp_path: Path, packages: set[str]) -> dict[str, str]:
    """A stand-in for this environment's site-packages in which ``packages`` are not installed: a folder of
    symbolic links to everything else (the editable install of this repository left out too)."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    farm = tmp_path / "site-packages"
    farm.mkdir()
    for entry in purelib.iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        if name in packages or entry.name.startswith("__editable__") or entry.suffix == ".pth":
            continue
        (farm / entry.name).symlink_to(entry)
    return {os.path.realpath(purelib): str(farm)}


def run_in_plain_kernel(nb: nbformat.NotebookNode, tmp_path: Path, allow_errors: bool,
                        without: frozenset[str] = frozenset()) -> dict:
    """Write ``nb`` alone into a fresh folder outside the repository, run that file in the stock python3 kernel
    with the folder as working directory (and, if asked, ``without`` some installed packages), and return the
    executed notebook, the probe's findings and times."""
    folder = tmp_path / "notebook"
    site = tmp_path / "site"
    folder.mkdir()
    site.mkdir()
    replaced = site_packages_without(tmp_path, set(without)) if without else {}
    assert not folder.resolve().is_relative_to(REPO), f"{folder} is inside the repository"
    path = folder / "notebook.ipynb"
    nbformat.write(nb, path)
    assert [p.name for p in folder.iterdir()] == ["notebook.ipynb"]
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(repo=os.path.realpath(REPO), replaced=replaced))

    to_run = nbformat.read(path, 4)
    cell_count = len(to_run.cells)
    to_run.cells.append(nbformat.v4.new_code_cell(PROBE.format(repo=os.path.realpath(REPO))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)
    client = nbclient.NotebookClient(
        to_run, timeout=60, kernel_name="python3", allow_errors=allow_errors,
        resources={"metadata": {"path": str(folder)}},
    )
    started = time.monotonic()
    client.execute(env=env)
    wall = time.monotonic() - started

    probe_cell = to_run.cells.pop()
    assert len(to_run.cells) == cell_count
    probe_out = [o for o in probe_cell.outputs if o.output_type == "stream" and o.name == "stdout"]
    assert probe_out and not [o for o in probe_cell.outputs if o.output_type == "error"], probe_cell.outputs
    probe = json.loads(probe_out[-1].text.strip().splitlines()[-1])
    return {
        "nb": to_run,
        "probe": probe,
        "without": set(without),
        "folder": folder,
        "wall": wall,
        "cells": sum(_cell_seconds(cell) for cell in _code_cells(to_run)),
    }


def _assert_plain(run: dict) -> None:
    probe = run["probe"]
    assert probe["numpy"] is ("numpy" not in run["without"]), probe
    assert os.path.realpath(probe["cwd"]) == os.path.realpath(run["folder"])
    assert probe["autograd_course"] is None, f"autograd_course was importable in the kernel: {probe['autograd_course']}"
    assert probe["modules_from_repo"] == [], probe["modules_from_repo"]
    assert probe["sys_path_in_repo"] == [], probe["sys_path_in_repo"]


def _problems(cell) -> list[str]:
    found = []
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            found.append(f"{output.ename}: {output.evalue}")
        elif output.output_type == "stream" and output.name == "stderr":
            found.append(f"stderr: {output.text!r}")
    return found


@pytest.fixture(scope="module")
def solved_runs(tmp_path_factory):
    runs = {}
    for notebook_id in NOTEBOOK_IDS:
        runs[notebook_id] = run_in_plain_kernel(
            solved(COURSE, notebook_id), tmp_path_factory.mktemp(f"solved-{notebook_id}"), allow_errors=False
        )
    print()
    for notebook_id, run in runs.items():
        print(f"plain kernel, solved {notebook_id}: {run['wall']:.2f} s in all, {run['cells']:.2f} s in cells")
    return runs


@pytest.mark.parametrize("notebook_id", NOTEBOOK_IDS)
def test_solved_notebook_runs_cleanly_in_a_plain_kernel(solved_runs, notebook_id):
    run = solved_runs[notebook_id]
    _assert_plain(run)
    problems = {_name(cell): _problems(cell) for cell in _code_cells(run["nb"]) if _problems(cell)}
    assert not problems, f"cells with errors or stderr output: {problems}"
    not_run = [_name(cell) for cell in _code_cells(run["nb"]) if cell.execution_count is None]
    assert not not_run, f"cells that did not run: {not_run}"
    counts = [cell.execution_count for cell in _code_cells(run["nb"])]
    assert counts == list(range(1, len(counts) + 1)), "cells should run once each, top to bottom"


@pytest.mark.parametrize("notebook_id", NOTEBOOK_IDS)
def test_solved_notebook_runs_in_a_few_seconds(solved_runs, notebook_id):
    run = solved_runs[notebook_id]
    print(f"{notebook_id}: kernel run {run['wall']:.2f} s, cells {run['cells']:.2f} s")
    assert run["cells"] <= CELLS_LIMIT, f"the cells took {run['cells']:.1f} s"
    assert run["wall"] <= KERNEL_WALL_LIMIT, f"the kernel run (start, cells, shut down) took {run['wall']:.1f} s"


@pytest.mark.parametrize("notebook_id", NOTEBOOK_IDS)
def test_untouched_notebook_fails_only_where_answers_are_missing(tmp_path, notebook_id):
    nb = submission(COURSE, notebook_id)
    run = run_in_plain_kernel(nb, tmp_path, allow_errors=True)
    print(f"plain kernel, untouched {notebook_id}: {run['wall']:.2f} s in all, {run['cells']:.2f} s in cells")
    _assert_plain(run)
    cells = _code_cells(run["nb"])
    assert all(cell.execution_count is not None for cell in cells), "every cell should run, top to bottom"
    problems = []
    unanswered = 0
    for cell in cells:
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        names = {o.ename for o in errors}
        if _is_answer(cell):
            # A stub either raises at once or defines a function whose body raises when a check calls it.
            unanswered += bool(errors) or "raise NotImplementedError()" in cell.source
            if names - {"NotImplementedError"}:
                problems.append(f"answer cell {_name(cell)}: {sorted(names)}")
        elif _is_check(cell):
            # The check fails: an assertion with a message, or the NotImplementedError of a stub it called.
            if names - {"AssertionError", "NotImplementedError"}:
                problems.append(f"check {_name(cell)}: {sorted(names)}")
            problems += [f"check {_name(cell)}: an assertion without a message"
                         for o in errors if o.ename == "AssertionError" and not o.evalue.strip()]
        elif errors:
            problems.append(f"cell {_name(cell)} (neither an answer nor a check): {sorted(names)}")
    assert not problems, "\n".join(problems)
    answers = [cell for cell in cells if _is_answer(cell)]
    assert answers and unanswered == len(answers), "every answer cell of the release should be a stub"
    checks = [cell for cell in cells if _is_check(cell)]
    failed = [cell for cell in checks if any(o.output_type == "error" for o in cell.get("outputs", []))]
    assert failed == checks, f"checks that passed without an answer: {[_name(c) for c in checks if c not in failed]}"


# --- torch without numpy ---------------------------------------------------------------------------
# torch does not depend on numpy, and neither does Jupyter: `pip install jupyterlab torch` gives a plain
# Jupyter with torch and no numpy. (This environment has numpy because the course's grader installs it.) The
# kernel gets this environment's site-packages without numpy (symbolic links to everything else), so that
# numpy is absent the way it is on such a machine, not blocked by an import hook.


@pytest.fixture(scope="module")
def solved_runs_without_numpy(tmp_path_factory):
    runs = {}
    for notebook_id in NOTEBOOK_IDS:
        runs[notebook_id] = run = run_in_plain_kernel(
            solved(COURSE, notebook_id), tmp_path_factory.mktemp(f"no-numpy-{notebook_id}"), allow_errors=True,
            without={"numpy"},
        )
        print(f"plain kernel without numpy, solved {notebook_id}: {run['wall']:.2f} s in all, "
              f"{run['cells']:.2f} s in cells")
    return runs


@pytest.mark.parametrize("notebook_id", NOTEBOOK_IDS)
def test_solved_notebook_runs_without_error_with_torch_but_no_numpy(solved_runs_without_numpy, notebook_id):
    run = solved_runs_without_numpy[notebook_id]
    _assert_plain(run)
    errors = {_name(cell): [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
              for cell in _code_cells(run["nb"])}
    assert not {name: found for name, found in errors.items() if found}
    assert all(cell.execution_count is not None for cell in _code_cells(run["nb"]))
    assert run["cells"] <= CELLS_LIMIT and run["wall"] <= KERNEL_WALL_LIMIT


@pytest.mark.parametrize("notebook_id", NOTEBOOK_IDS)
def test_solved_notebook_writes_nothing_to_stderr_with_torch_but_no_numpy(solved_runs_without_numpy, notebook_id):
    run = solved_runs_without_numpy[notebook_id]
    stderr = {_name(cell): [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
              for cell in _code_cells(run["nb"])}
    assert not {name: text for name, text in stderr.items() if text}
