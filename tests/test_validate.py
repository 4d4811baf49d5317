"""nbgrader validate and the JupyterLab Validate button, run from the course root.

Both must use the course configuration (nbgrader_config.py, which loads grader_config.py) and report success on
a correct notebook and the failing cells, with their hints, on a wrong one. Three ways in, all from the root of
a temporary copy of the course:

* nbgrader's own Python API: the configuration loaded the way the Validate button's server handler loads it,
  and a ``Validator`` built from it;
* the ``nbgrader validate`` command line (it exits 0 whether or not validation passes, so its output is read);
* the HTTP endpoint behind the Validate button (``POST /assignments/validate`` of nbgrader's
  validate_assignment server extension) on a Jupyter server started in the course root.

That the configuration is in effect, not merely read, is checked with a setting whose effect can be seen:
``c.Execute.timeout`` in the copy's grader_config.py is lowered for a moment and a slow cell times out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import nbformat
import pytest

from autograd_course.catalog import solved

from jupyter_helpers import Server, isolated_env, running_server, tail

pytestmark = pytest.mark.slow

ASSIGNMENT = "autograd_basics"
NOTEBOOK_ID = "q6_basic_gradients"
NOTEBOOK = f"{NOTEBOOK_ID}.ipynb"
ANSWER_ID = "q6-gradient-answer"
CHECK_ID = "q6_gradient"
HINT = "x.requires_grad is False: did you create x with requires_grad=True?"
# Forgot requires_grad=True. The rest of the notebook is answered correctly, so this check is the one failure.
WRONG_ANSWER = 'x = torch.tensor([2.0])\ny = x**2 + 3 * x\nprint("x.grad =", x.grad)'
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SUCCESS = "Success! Your notebook passes all the tests."
NO_CONFIG_WARNING = "No nbgrader_config.py file found"

VALIDATE_TIMEOUT = 180  # seconds, for one validation run in a subprocess or over HTTP


# --- the course copy and the notebooks ------------------------------------------------------------


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _cell(notebook, grade_id: str):
    matches = [cell for cell in notebook.cells if _grade_id(cell) == grade_id]
    assert len(matches) == 1, f"expected one cell with grade_id {grade_id!r}, found {len(matches)}"
    return matches[0]


def probe_notebook():
    """One graded cell that takes 3 seconds: it passes unless a cell timeout below that is in effect."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("import time\ntime.sleep(3)")
    cell.metadata["nbgrader"] = {
        "grade": True, "grade_id": "slow", "locked": False, "points": 1, "schema_version": 3,
        "solution": False, "task": False,
    }
    notebook.cells.append(cell)
    return notebook


@contextlib.contextmanager
def course_setting(course_root: Path, line: str):
    """Append ``line`` to the copy's grader_config.py for the duration of the block."""
    config = course_root / "grader_config.py"
    original = config.read_text()
    config.write_text(original + f"\n{line}\n")
    try:
        yield
    finally:
        config.write_text(original)


@pytest.fixture(scope="module")
def jupyter_env(tmp_path_factory) -> dict[str, str]:
    """HOME and Jupyter directories of our own, so that no user or machine configuration leaks in: for the
    validations run in this process as well as for the commands and the server it starts."""
    env = isolated_env(tmp_path_factory.mktemp("validate-home"))
    with pytest.MonkeyPatch.context() as patch:
        for key in set(os.environ) - set(env):
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        yield dict(os.environ)


@pytest.fixture(scope="module")
def course_root(module_course, jupyter_env) -> Path:
    """A copy of the course root with a correct, a wrong and a probe notebook of a student's in it."""
    root = module_course.root
    # The instructor's solution; in the wrong one, requires_grad=True is forgotten in the first answer cell.
    correct = solved(module_course, NOTEBOOK_ID)
    wrong = solved(module_course, NOTEBOOK_ID, {ANSWER_ID: WRONG_ANSWER})
    assert _cell(wrong, ANSWER_ID).source == WRONG_ANSWER
    for folder, notebook in (("correct", correct), ("wrong", wrong)):
        (root / folder / ASSIGNMENT).mkdir(parents=True)
        nbformat.write(notebook, root / folder / ASSIGNMENT / NOTEBOOK)
    (root / "probe").mkdir()
    nbformat.write(probe_notebook(), root / "probe" / "slow.ipynb")
    return root


def test_solved_notebook_is_the_release_with_the_solution_typed_in(module_course):
    """The correct notebook (catalog.solved) is what a student gets by typing the instructor's solution over the
    code stub of every answer cell of the release."""
    release = nbformat.read(module_course.release_dir / NOTEBOOK, as_version=4)
    source = nbformat.read(module_course.source_dir / NOTEBOOK, as_version=4)
    correct = solved(module_course, NOTEBOOK_ID)
    answer_cells = [cell for cell in release.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    assert answer_cells, "the release notebook has no answer cells"
    for cell in answer_cells:
        grade_id = _grade_id(cell)
        source_cell = _cell(source, grade_id)
        if cell.cell_type != "code":
            continue
        marked = source_cell.source.splitlines()
        stripped = [line.strip() for line in marked]
        assert BEGIN in stripped and END in stripped, f"no solution markers in {grade_id}"
        solution = marked[stripped.index(BEGIN) + 1 : stripped.index(END)]
        lines = cell.source.splitlines()
        stubs = [i for i in range(len(lines) - 1) if [line.strip() for line in lines[i : i + 2]] == STUB]
        assert stubs, f"no code stub {STUB} in the release cell {grade_id}:\n{cell.source}"
        typed_in = lines[: stubs[0]] + solution + lines[stubs[0] + 2 :]
        # Filling the stub in must give back the instructor's cell without its markers ...
        unmarked = [line for line in marked if line.strip() not in (BEGIN, END)]
        assert typed_in == unmarked, f"filling in {grade_id} did not give the solution"
        # ... and that is the answer the correct notebook holds.
        assert _cell(correct, grade_id).source.splitlines() == typed_in, (
            f"catalog.solved's {grade_id} is not the solution typed in"
        )


def _notebook(kind: str) -> str:
    """Path of a student notebook relative to the course root."""
    return "probe/slow.ipynb" if kind == "probe" else f"{kind}/{ASSIGNMENT}/{NOTEBOOK}"


def _check_source(course_root: Path) -> str:
    release = nbformat.read(course_root / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    return _cell(release, CHECK_ID).source.strip()


def _assert_reports_check_with_hint(results: dict, course_root: Path) -> None:
    assert "changed" not in results and "type_changed" not in results, results
    failed = results.get("failed", [])
    assert [cell["source"] for cell in failed] == [_check_source(course_root)], (
        "expected exactly the q6_gradient check to fail, got:\n"
        + "\n---\n".join(cell["source"][:200] for cell in failed)
    )
    from nbconvert.filters import strip_ansi

    assert f"AssertionError: {HINT}" in strip_ansi(failed[0]["raw_error"]), failed[0]["raw_error"]
    assert HINT in failed[0]["error"], failed[0]["error"]  # the HTML the Validate button shows


# --- nbgrader's Python API, configured as the Validate button configures it ------------------------


def _load_config_from(directory: Path):
    """The configuration exactly as the Validate button's handler loads it, with ``directory`` as the cwd."""
    from nbgrader.server_extensions.validate_assignment.handlers import ValidateAssignmentHandler

    with contextlib.chdir(directory):
        # load_config does not use the handler's state; it reads nbgrader_config.py from the cwd.
        return ValidateAssignmentHandler.load_config(None)


def _validator(course_root: Path):
    from nbgrader.validator import Validator

    return Validator(config=_load_config_from(course_root))


def test_course_configuration_is_loaded_from_course_root(course_root, tmp_path):
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import Execute
    from traitlets.config import PyFileConfigLoader

    course_config = PyFileConfigLoader("grader_config.py", path=str(course_root)).load_config()
    assert course_config.CourseDirectory.course_id, "grader_config.py sets no course_id to look for"

    config = _load_config_from(course_root)
    # Every nbgrader setting of grader_config.py arrives, through nbgrader_config.py's load_subconfig.
    for section in ("CourseDirectory", "ClearSolutions", "Execute"):
        for name, value in course_config[section].items():
            assert config[section][name] == value, f"{section}.{name}: {config[section].get(name)!r} != {value!r}"
    assert CourseDirectory(config=config).course_id == course_config.CourseDirectory.course_id
    validator = _validator(course_root)
    assert Execute(parent=validator).timeout == course_config.Execute.timeout

    # Outside the course root there is no course configuration: it really comes from the cwd.
    elsewhere = _load_config_from(tmp_path)
    assert "course_id" not in elsewhere.get("CourseDirectory", {})


def test_validator_passes_correct_notebook(course_root):
    validator = _validator(course_root)
    results = validator.validate(str(course_root / _notebook("correct")))
    assert results == {}, f"validation of the instructor's solution did not pass: {json.dumps(results, indent=1)}"


def test_validator_reports_failing_check_with_hint(course_root):
    validator = _validator(course_root)
    results = validator.validate(str(course_root / _notebook("wrong")))
    _assert_reports_check_with_hint(results, course_root)


def test_course_timeout_is_in_effect_in_validator(course_root):
    # Control: with the course's timeout the slow cell passes ...
    assert _validator(course_root).validate(str(course_root / _notebook("probe"))) == {}
    # ... and with a one-second timeout in grader_config.py it is stopped.
    with course_setting(course_root, "c.Execute.timeout = 1"):
        results = _validator(course_root).validate(str(course_root / _notebook("probe")))
    assert "CellTimeoutError" in "".join(cell["raw_error"] for cell in results.get("failed", [])), results


# --- nbgrader validate on the command line ---------------------------------------------------------


def _nbgrader_validate(course_root: Path, env: dict[str, str], kind: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", "validate", _notebook(kind)],
        cwd=course_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=VALIDATE_TIMEOUT,
    )


def test_cli_passes_correct_notebook(course_root, jupyter_env):
    result = _nbgrader_validate(course_root, jupyter_env, "correct")
    assert result.returncode == 0, result.stderr
    assert NO_CONFIG_WARNING not in result.stderr, "nbgrader validate did not find the course's nbgrader_config.py"
    assert SUCCESS in result.stdout, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "VALIDATION FAILED" not in result.stdout


def test_cli_reports_failing_check_with_hint(course_root, jupyter_env):
    from nbgrader.validator import Validator

    result = _nbgrader_validate(course_root, jupyter_env, "wrong")
    # nbgrader validate exits 0 even when validation fails: the verdict is in its output.
    assert result.returncode == 0, result.stderr
    assert NO_CONFIG_WARNING not in result.stderr
    output = result.stdout
    assert "VALIDATION FAILED ON 1 CELL(S)!" in output, f"stdout:\n{output}\nstderr:\n{result.stderr}"
    assert SUCCESS not in output
    # The one failing cell is the q6_gradient check (printed indented and cut at the line width) ...
    assert output.count("The following cell failed:") == 1, output
    assert Validator()._indent(_check_source(course_root)) in output, output
    # ... and its hint is printed whole, not cut off at the line width.
    assert re.search(rf"^\s*AssertionError: {re.escape(HINT)}$", output, re.MULTILINE), output


def test_cli_uses_course_timeout(course_root, jupyter_env):
    with course_setting(course_root, "c.Execute.timeout = 1"):
        result = _nbgrader_validate(course_root, jupyter_env, "probe")
    assert "VALIDATION FAILED ON 1 CELL(S)!" in result.stdout and "CellTimeoutError" in result.stdout, (
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


# --- the Validate button's endpoint on a Jupyter server started in the course root ---------------


class CourseServer(Server):
    def validate(self, notebook: str) -> dict:
        """What the Validate button does once the notebook is saved: POST its path, relative to the root."""
        try:
            return self.request("POST", "/assignments/validate", {"path": notebook}, timeout=VALIDATE_TIMEOUT)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"POST /assignments/validate: {error}\nserver log:\n{tail(self.log)}") from None


@pytest.fixture(scope="module")
def course_server(course_root, jupyter_env):
    """A Jupyter server started in the course root, as an instructor or student would start JupyterLab."""
    with running_server("server", course_root, jupyter_env, server_class=CourseServer) as server:
        yield server


def test_validate_button_endpoint_is_served(course_server):
    import nbgrader

    # The labextension checks the server extension's version before it validates.
    assert course_server.request("GET", "/nbgrader_version", {"version": nbgrader.__version__}) == {"success": True}


def test_validate_button_passes_correct_notebook(course_server):
    response = course_server.validate(_notebook("correct"))
    assert response == {"success": True, "value": {}}, json.dumps(response, indent=1)[:4000]
    assert NO_CONFIG_WARNING not in course_server.log.read_text(errors="replace")


def test_validate_button_reports_failing_check_with_hint(course_server, course_root):
    response = course_server.validate(_notebook("wrong"))
    assert response.get("success") is True, json.dumps(response, indent=1)[:4000]
    _assert_reports_check_with_hint(response["value"], course_root)


def test_validate_button_uses_course_timeout(course_server, course_root):
    # The handler reads the configuration from the server's cwd, the course root, on every request.
    with course_setting(course_root, "c.Execute.timeout = 1"):
        response = course_server.validate(_notebook("probe"))
    failed = response.get("value", {}).get("failed", [])
    assert "CellTimeoutError" in "".join(cell["raw_error"] for cell in failed), json.dumps(response, indent=1)
