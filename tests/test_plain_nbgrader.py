"""Plain nbgrader in the course root uses grader_config.py, the one configuration autograd-course uses.

The requirement: plain ``nbgrader generate_assignment/autograde/export`` in the course root and
``autograd-course`` both use grader_config.py, without two copies of any setting.

In a scratch copy of the course, the real ``nbgrader`` command is run in the course root, as an instructor
would: ``generate_assignment`` (it must write the committed release), ``autograde`` of a class of two (one
student with the solutions, one whose Q6 answer also tries to read the instructor's source notebook),
``generate_feedback`` and ``export``. That plain nbgrader graded with the course's sandboxed executor (set only
in grader_config.py) shows in the second student's output: the source notebook, readable by the instructor, is
out of the student code's reach. That it used the course's feedback steps shows in the feedback pages: no
hidden tests.

That the settings live in one place is checked on the files themselves (nbgrader_config.py sets nothing; it
only loads grader_config.py), on what nbgrader actually loads in the course root (every value written in
grader_config.py, and nothing else of the course's), and by editing grader_config.py and seeing both nbgrader
and autograd-course pick up the edit.
"""

from __future__ import annotations

import ast
import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from traitlets.config import PyFileConfigLoader

from autograd_course.catalog import solved
from autograd_course.course import Course

from course_helpers import copy_course, hidden_lines, marks, submit

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ASSIGNMENT = "autograd_basics"
Q6 = "q6_basic_gradients"
Q6_ANSWER = "q6-gradient-answer"
HIDDEN_ONLY = "graph_was_used"  # a name that appears only in hidden tests
COMMAND_TIMEOUT = 600


def nbgrader_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(VENV_BIN) + os.pathsep + env.get("PATH", "")
    return env


def nbgrader(root: Path, *args: str) -> subprocess.CompletedProcess:
    """The real nbgrader command line, run in the course root."""
    env = nbgrader_env()
    executable = shutil.which("nbgrader", path=env["PATH"])
    assert executable and Path(executable).parent == VENV_BIN, executable
    result = subprocess.run(
        ["nbgrader", *args], cwd=root, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    assert "| ERROR]" not in result.stderr and "| CRITICAL]" not in result.stderr, result.stderr
    assert "No nbgrader_config.py file found" not in result.stderr
    return result


def _grade_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta.get("grade_id") if isinstance(meta, dict) else None


def _page_text(path: Path) -> str:
    """A feedback page as a reader sees it: tags (syntax highlighting included) removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


# --- the plain nbgrader run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_run(module_course):
    course = module_course
    root = course.root
    secret = course.source_dir / f"{Q6}.ipynb"

    generated = nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")

    submit(course, "solver", {notebook_id: solved(course, notebook_id) for notebook_id in course.notebook_ids})
    snooper_q6 = solved(course, Q6)
    probe = (
        f"\ntry:\n    open({str(secret)!r}, 'rb').read()\n    print('READ')\n"
        "except OSError as error:\n    print('denied', error)\n"
    )
    for cell in snooper_q6.cells:
        if _grade_id(cell) == Q6_ANSWER:
            cell.source = cell.source.rstrip("\n") + "\n" + probe
    submit(course, "snooper", {**{n: solved(course, n) for n in course.notebook_ids}, Q6: snooper_q6})
    # The file the snooper reaches for is there and readable, to the instructor and to any unsandboxed kernel.
    assert secret.is_file() and os.access(secret, os.R_OK)

    autograded = nbgrader(root, "autograde", ASSIGNMENT)
    feedback = nbgrader(root, "generate_feedback", ASSIGNMENT)
    exported = nbgrader(root, "export")
    return {"course": course, "generated": generated, "autograded": autograded, "feedback": feedback,
            "exported": exported}


def test_generate_assignment_writes_the_committed_release(plain_run):
    course = plain_run["course"]
    for notebook_id in course.notebook_ids:
        made = json.loads((course.release_dir / f"{notebook_id}.ipynb").read_text())
        committed = json.loads((REPO / "release" / ASSIGNMENT / f"{notebook_id}.ipynb").read_text())
        assert made == committed, f"plain nbgrader generate_assignment made a different {notebook_id}"
    assert (course.root / "gradebook.db").is_file()


READ_GRADEBOOK = """
import json, sys
from nbgrader.api import Gradebook
database, assignment, students = sys.argv[1], sys.argv[2], sys.argv[3:]
scores = {}
with Gradebook("sqlite:///" + database) as gradebook:
    for student in students:
        submission = gradebook.find_submission(assignment, student)
        scores[student] = {"score": submission.score, "max_score": submission.max_score,
                           "notebooks": {nb.name: nb.score for nb in submission.notebooks}}
print(json.dumps(scores))
"""


def read_gradebook(root: Path, *students: str) -> dict:
    """Scores from the gradebook through nbgrader's own API (nbgrader.api.Gradebook), read in a fresh process in
    the course root, as an instructor's script would."""
    result = subprocess.run(
        [sys.executable, "-c", READ_GRADEBOOK, str(root / "gradebook.db"), ASSIGNMENT, *students], cwd=root,
        env=nbgrader_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_autograde_scores_the_solutions_40(plain_run):
    course = plain_run["course"]
    scores = read_gradebook(course.root, "solver", "snooper")
    for student in ("solver", "snooper"):
        assert (scores[student]["score"], scores[student]["max_score"]) == (40, 40), (student, scores[student])
        assert scores[student]["notebooks"] == dict.fromkeys(course.notebook_ids, 10), student


def test_autograde_runs_student_code_in_the_sandbox(plain_run):
    course = plain_run["course"]
    nb = nbformat.read(course.autograded_dir / "snooper" / ASSIGNMENT / f"{Q6}.ipynb", 4)
    cell = next(cell for cell in nb.cells if _grade_id(cell) == Q6_ANSWER)
    assert "open(" in cell.source, "the snooper's answer should be graded as submitted"
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").splitlines()
    assert "READ" not in printed, "plain nbgrader autograde let student code read source/: no sandbox"
    assert any(line.startswith("denied") for line in printed), printed
    assert "x.grad = tensor([7.])" in printed, "the answer itself should have run"


def test_generate_feedback_hides_the_hidden_tests(plain_run):
    course = plain_run["course"]
    for notebook_id in course.notebook_ids:
        hidden = hidden_lines(course, notebook_id)
        assert hidden, f"{notebook_id} should have hidden tests"
        autograded = (course.autograded_dir / "solver" / ASSIGNMENT / f"{notebook_id}.ipynb").read_text()
        assert "BEGIN HIDDEN TESTS" in autograded, "the hidden tests should have run at grading"
        for student in ("solver", "snooper"):
            page = course.feedback_dir / student / ASSIGNMENT / f"{notebook_id}.html"
            text = _page_text(page)
            assert "HIDDEN TESTS" not in text, page
            page_lines = {line.strip() for line in text.splitlines()}
            shown = [line for line in hidden if line in page_lines]
            assert not shown, f"{page} shows hidden test code: {shown[:3]}"
    q6_page = _page_text(course.feedback_dir / "solver" / ASSIGNMENT / f"{Q6}.html")
    assert HIDDEN_ONLY in (course.source_dir / f"{Q6}.ipynb").read_text()
    assert HIDDEN_ONLY not in q6_page
    # The visible checks are still there (so the absence above is not an empty page).
    assert "did you create x with requires_grad=True?" in q6_page


def test_export_writes_the_courses_grades_csv(plain_run):
    # `nbgrader export` writes grades.csv as the contract fixes it, the file `autograd-course grade` writes.
    course = plain_run["course"]
    with open(course.root / "grades.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {row["student_id"]: row for row in reader}
    assert reader.fieldnames[:8] == ["student_id", *course.notebook_ids, "score", "max_score", "status"]
    assert set(rows) == {"solver", "snooper"}
    for student, row in rows.items():
        assert (row["score"], row["max_score"], row["status"]) == (marks(), marks(), "ok"), (student, row)


# --- one place for the settings -------------------------------------------------------------------


def _settings_written_in(path: Path) -> dict[tuple[str, str], object]:
    """Every ``c.Section.trait = ...`` written in a config file, with the value the file gives it (some are
    computed: the preprocessor lists are nbgrader's defaults with the course's steps put in)."""
    keys = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute)
                        and isinstance(target.value.value, ast.Name) and target.value.value.id == "c"):
                    keys.append((target.value.attr, target.attr))
    if not keys:
        return {}
    loaded = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    return {(section, trait): loaded[section][trait] for section, trait in keys}


LOAD_CONFIG = """
import json
from nbgrader.apps import NbGraderApp
app = NbGraderApp()
app.initialize([])
print(json.dumps({
    "files": app.loaded_config_files,
    "config": {section: dict(values) for section, values in app.config.items() if values},
}, default=repr))
"""


def nbgrader_loaded_config(root: Path) -> dict:
    """The configuration nbgrader's applications load in the course root (a fresh process, cwd = root)."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_CONFIG], cwd=root, env=nbgrader_env(), capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_nbgrader_config_py_sets_nothing_itself():
    tree = ast.parse((REPO / "nbgrader_config.py").read_text())
    assert _settings_written_in(REPO / "nbgrader_config.py") == {}
    statements = [node for node in tree.body
                  if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]  # docstrings
    assert len(statements) == 1, ast.dump(tree)
    call = statements[0].value if isinstance(statements[0], ast.Expr) else None
    assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "load_subconfig", ast.dump(tree)
    assert [ast.literal_eval(arg) for arg in call.args] == ["grader_config.py"] and not call.keywords


def test_nbgrader_loads_the_values_written_in_grader_config(module_course):
    root = module_course.root
    written = _settings_written_in(root / "grader_config.py")
    assert ("Execute", "timeout") in written and ("CourseDirectory", "course_id") in written
    assert written[("Autograde", "autograde_preprocessors")][0] == "autograd_course.executor.SandboxedExecute"

    loaded = nbgrader_loaded_config(root)
    assert str(root / "nbgrader_config.py") in loaded["files"]
    config = loaded["config"]
    for (section, trait), value in written.items():
        assert config.get(section, {}).get(trait) == value, f"{section}.{trait}"
    assert config["Execute"]["timeout"] == written[("Execute", "timeout")]
    assert config["CourseDirectory"]["course_id"] == written[("CourseDirectory", "course_id")]
    assert config["Autograde"]["autograde_preprocessors"][0] == "autograd_course.executor.SandboxedExecute"
    # Nothing else: every setting nbgrader has came from grader_config.py.
    extra = {f"{s}.{t}" for s, values in config.items() for t in values if (s, t) not in written}
    assert not extra, f"settings that do not come from grader_config.py: {sorted(extra)}"

    # autograd-course reads the same values from the same file.
    course_config = Course.at(root).config
    assert {(s, t): course_config[s][t] for s, t in written} == written
    nbgrader_side = Course.at(root).nbgrader_config()
    for (section, trait), value in written.items():
        assert nbgrader_side[section][trait] == value


def test_an_edit_to_grader_config_reaches_both_tools(tmp_path):
    course = copy_course(tmp_path / "course")
    path = course.root / "grader_config.py"
    text = path.read_text()
    for old, new in [("c.Execute.timeout = 30", "c.Execute.timeout = 7"),
                     ('c.CourseDirectory.course_id = "autograd-basics"', 'c.CourseDirectory.course_id = "edited-course"'),
                     ("c.SandboxedExecute.output_limit = 100_000", "c.SandboxedExecute.output_limit = 1234")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)

    config = nbgrader_loaded_config(course.root)["config"]
    assert config["Execute"]["timeout"] == 7
    assert config["CourseDirectory"]["course_id"] == "edited-course"
    assert config["SandboxedExecute"]["output_limit"] == 1234

    edited = Course.at(course.root)
    assert edited.config.Execute.timeout == 7
    assert edited.config.CourseDirectory.course_id == "edited-course"
    assert edited.nbgrader_config().SandboxedExecute.output_limit == 1234
