"""`autograd-course grade` as an instructor runs it, held to ../shared/CONTRACT.md: the grades.csv format, exit
statuses, --jobs / --student / --timeout / --root / --no-sandbox, the progress lines, and refusing to run
without a sandbox or with a stale release/.

Every check goes through the real command in a subprocess. The class is graded once per option set, in
module-scoped fixtures that keep a snapshot of what each run wrote, so later runs on the same course copy do not
change what earlier tests look at.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import MissingEntry

from autograd_course.catalog import by_name, solved

from course_helpers import NOTEBOOKS, copy_course, marks, notebook_marks, submit
from gradebook_helpers import part_scores

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
COMMAND = str(BIN / "autograd-course")
HEADER = ["student_id", *NOTEBOOKS, "score", "max_score", "status"]
REASONS = ("missing", "invalid", "timeout", "crashed", "resource_limit", "tampered", "error")
STATUS_ITEM = re.compile(rf"^({'|'.join(REASONS)}):({'|'.join(NOTEBOOKS)})$")
NUMBER = re.compile(r"^\d+(\.\d+)?$")
PROGRESS = re.compile(r"(\d+)/(\d+) students, (\d+) failed, ([\d.]+) s")
BROKEN_JSON = b'{"cells": [ "saved while the laptop died'


# ------------------------------------------------------------------------------------------ helpers
def run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([COMMAND, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def read_csv(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    header, *body = list(reader)
    rows: dict[str, dict[str, str]] = {}
    for line in body:
        assert line[0] not in rows, f"two rows for {line[0]}"
        rows[line[0]] = dict(zip(header, line, strict=True))
    return header, rows


def progress_lines(stderr: str) -> list[re.Match]:
    return [match for match in map(PROGRESS.search, stderr.splitlines()) if match]


def student_folders(course) -> list[str]:
    return sorted(entry.name for entry in course.submitted_dir.iterdir() if entry.is_dir())


@dataclass
class Graded:
    """What one `grade` run left behind, copied out before anything else touches the course."""

    result: subprocess.CompletedProcess
    csv_bytes: bytes
    header: list[str]
    rows: dict[str, dict[str, str]]
    parts: dict[tuple[str, str], dict[str, float]]


def parts_or_none(course, student: str, notebook_id: str) -> dict[str, float] | None:
    """Per-part scores from the gradebook; None when nbgrader recorded no submission (its run failed)."""
    try:
        return part_scores(course, student, notebook_id)
    except MissingEntry:
        return None


def grade(course, *args: str, env: dict | None = None) -> Graded:
    result = run(["grade", *args], cwd=course.root, env=env)
    assert result.returncode == 0, f"grade {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
    header, rows = read_csv(course.grades_csv)
    parts = {
        (student, notebook_id): parts_or_none(course, student, notebook_id)
        for student in rows
        for notebook_id in NOTEBOOKS
    }
    return Graded(result, course.grades_csv.read_bytes(), header, rows, parts)


def full(course, **replace) -> dict:
    notebooks = {notebook_id: solved(course, notebook_id) for notebook_id in NOTEBOOKS}
    notebooks.update(replace)
    return notebooks


def build_class(course) -> None:
    """Right, wrong, broken, empty and junk hand-ins, and a stray file that is not a student."""
    submit(course, "ada", full(course))
    submit(course, "cy", full(course, q6_basic_gradients=by_name("q6 forgot requires_grad on x").build(course)))
    submit(course, "dan", full(course, q6_basic_gradients=BROKEN_JSON))
    (course.submitted_dir / "empty").mkdir()
    junk = course.submitted_dir / "junk" / "autograd_basics"
    junk.mkdir(parents=True)
    (junk / "scratch.py").write_text("print('my notes')\n")
    (course.submitted_dir / "junk" / "notes.txt").write_text("nothing to see\n")
    (course.submitted_dir / "roster.txt").write_text("ada, cy, dan, empty, junk\n")


CLASS = ["ada", "cy", "dan", "empty", "junk"]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def class_a(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("class_a") / "course")
    build_class(course)
    return course


@pytest.fixture(scope="module")
def first(class_a) -> Graded:
    return grade(class_a, "--jobs", "2")


@pytest.fixture(scope="module")
def second(class_a, first) -> Graded:
    """The same course graded again, as is."""
    return grade(class_a, "--jobs", "2")


@pytest.fixture(scope="module")
def one_job(tmp_path_factory) -> Graded:
    """The same class in another copy of the course, graded one student at a time."""
    course = copy_course(tmp_path_factory.mktemp("class_b") / "course")
    build_class(course)
    return grade(course, "--jobs", "1")


@pytest.fixture(scope="module")
def selective(class_a, second) -> Graded:
    """After the full runs, ada now hands in a mistake and cy the solution; only cy is regraded."""
    submit(class_a, "ada", full(class_a, q6_basic_gradients=by_name("q6 forgot requires_grad on x").build(class_a)))
    submit(class_a, "cy", full(class_a))
    return grade(class_a, "--student", "c*")


SLEEPY_CELLS = {
    "q6_basic_gradients": "q6c-answer",
    "q7_weights": "q7b-answer",
    "q8_breaking_the_graph": "q8-wrong-fix-answer",
    "q9_gradient_accumulation": "q9-function-answer",
}


@pytest.fixture(scope="module")
def troubled(tmp_path_factory) -> Graded:
    """A small class graded once with --timeout 1:

    - `sleepy`: in one answer cell per notebook, `time.sleep(5)` before the answer;
    - `late`: the solution, but an unparsable timestamp.txt (which `nbgrader collect` writes) makes nbgrader's
      autograde fail for that student.

    One job: every autograde starts its process's judge before nbgrader touches the student's results
    (executor.SandboxCheckingExporter), so with two jobs `late`'s worker would start a judge of its own, and on two
    cores its start would compete with `sleepy`'s grading, which the timing test below measures.
    """
    course = copy_course(tmp_path_factory.mktemp("troubled") / "course")
    notebooks = {}
    for notebook_id, cell_id in SLEEPY_CELLS.items():
        nb = solved(course, notebook_id)
        cell = next(cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == cell_id)
        cell.source = "import time; time.sleep(5)\n" + cell.source
        notebooks[notebook_id] = nb
    submit(course, "sleepy", notebooks)
    folder = submit(course, "late", full(course))
    (folder / "timestamp.txt").write_text("the day after the deadline\n")
    return grade(course, "--timeout", "1", "--jobs", "1")


# ------------------------------------------------------------------------------------------ grades.csv
def test_header_follows_the_contract(first):
    assert first.header[: len(HEADER)] == HEADER


def test_one_row_per_student_folder_and_none_for_a_plain_file(first, class_a):
    assert (class_a.submitted_dir / "roster.txt").is_file()
    assert sorted(first.rows) == student_folders(class_a) == CLASS


def test_every_row_has_max_score_40_and_numeric_points(first):
    for student, row in first.rows.items():
        assert row["max_score"] == marks(), (student, row)
        for column in [*NOTEBOOKS, "score", "max_score"]:
            assert NUMBER.match(row[column]), (student, column, row[column])


def test_score_is_the_sum_of_the_notebook_columns(first):
    for student, row in first.rows.items():
        assert float(row["score"]) == pytest.approx(sum(float(row[notebook_id]) for notebook_id in NOTEBOOKS)), student


def test_status_is_ok_or_reason_items(first):
    for row in first.rows.values():
        assert row["status"] == "ok" or all(STATUS_ITEM.match(item) for item in row["status"].split(";")), row


def test_students_whose_notebooks_all_ran_are_ok_right_or_wrong(first):
    ada, cy = first.rows["ada"], first.rows["cy"]
    assert (ada["status"], ada["score"]) == ("ok", marks())
    # Loses exactly q6_gradient's 4 points, and is still `ok`: a wrong answer is not an error.
    assert (cy["status"], cy["q6_basic_gradients"], cy["score"]) == ("ok", f"{notebook_marks(NOTEBOOKS[0]) - 4:g}", marks(4))


def test_empty_and_junk_folders_are_graded_as_missing_everything(first):
    for student in ("empty", "junk"):
        row = first.rows[student]
        assert row["status"].split(";") == [f"missing:{notebook_id}" for notebook_id in NOTEBOOKS], row
        assert [row[notebook_id] for notebook_id in NOTEBOOKS] == ["0"] * 4
        assert row["score"] == "0"


def test_a_broken_notebook_gets_an_invalid_status_and_exit_0(first):
    """Contract: non-zero only when the grader itself could not run; a broken submission is a recorded outcome."""
    assert first.result.returncode == 0
    dan = first.rows["dan"]
    assert dan["status"] == "invalid:q6_basic_gradients", dan
    assert dan["q6_basic_gradients"] == "0"
    assert [dan[notebook_id] for notebook_id in NOTEBOOKS[1:]] == ["10"] * 3
    assert dan["score"] == marks(notebook_marks("q6_basic_gradients"))


# ------------------------------------------------------------------------------------------ repeatability
def test_one_job_and_two_jobs_write_the_same_grades_csv(first, one_job):
    assert one_job.csv_bytes == first.csv_bytes


def test_grading_twice_is_idempotent(first, second):
    assert second.csv_bytes == first.csv_bytes
    assert second.parts == first.parts
    # the per-part scores are real ones, not an empty comparison
    assert first.parts[("cy", "q6_basic_gradients")]["q6_gradient"] == 0
    assert first.parts[("ada", "q6_basic_gradients")]["q6_gradient"] == 4


# ------------------------------------------------------------------------------------------ --student
def test_student_glob_regrades_only_the_matching_students(second, selective):
    before, after = second.rows, selective.rows
    assert sorted(after) == CLASS  # every student still has a row
    # cy matched: regraded from the new submission
    cy = after["cy"]
    assert (cy["q6_basic_gradients"], cy["score"], cy["status"]) == (f"{notebook_marks(NOTEBOOKS[0]):g}", marks(), "ok")
    # ada did not match: keeps the old grade although the new submission would lose 4 points
    assert after["ada"] == before["ada"]
    assert selective.parts[("ada", "q6_basic_gradients")] == second.parts[("ada", "q6_basic_gradients")]
    for student in ("dan", "empty", "junk"):
        assert after[student] == before[student]
    assert progress_lines(selective.result.stderr)[-1].group(1, 2) == ("1", "1")


# ------------------------------------------------------------------------------------------ progress
def test_progress_ends_with_all_students_done(first):
    lines = progress_lines(first.result.stderr)
    assert lines, first.result.stderr
    total = str(len(CLASS))
    assert lines[-1].group(1, 2, 3) == (total, total, "0"), lines[-1].group(0)


def test_progress_names_a_student_whose_grading_fails(troubled):
    """`late`'s grading fails in nbgrader (see the `troubled` fixture); `sleepy`'s notebooks time out but are
    graded."""
    stderr = troubled.result.stderr
    named = [line for line in stderr.splitlines() if re.match(r"^\s*late\b", line)]
    assert named and "failed" in named[0], stderr
    assert not any(re.match(r"^\s*sleepy\b", line) for line in stderr.splitlines()), stderr
    assert progress_lines(stderr)[-1].group(1, 2, 3) == ("2", "2", "1"), stderr
    # still a recorded outcome for everyone, and exit 0
    assert troubled.result.returncode == 0
    assert sorted(troubled.rows) == ["late", "sleepy"]
    status = troubled.rows["late"]["status"]
    assert status != "ok" and all(STATUS_ITEM.match(item) for item in status.split(";")), status


# ------------------------------------------------------------------------------------------ sandbox
def test_refuses_to_grade_without_bubblewrap_unless_told(course):
    submit(course, "ada", full(course))
    assert shutil.which("bwrap", path=str(BIN)) is None
    env = {**os.environ, "PATH": str(BIN)}  # the command and nbgrader's tools, but no bwrap

    refused = run(["grade"], cwd=course.root, env=env)
    assert refused.returncode != 0
    assert "bubblewrap" in refused.stderr and "--no-sandbox" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    assert not course.grades_csv.exists()

    unsandboxed = grade(course, "--no-sandbox", env=env)
    assert unsandboxed.result.returncode == 0
    assert unsandboxed.rows["ada"]["score"] == marks()
    assert unsandboxed.rows["ada"]["status"] == "ok"


# ------------------------------------------------------------------------------------------ grader cannot run
def assert_refused(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith("autograd-course: "), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_no_submitted_folder_is_an_error(course):
    assert not course.submitted_dir.exists()
    assert_refused(run(["grade"], cwd=course.root), "submitted")
    assert not course.grades_csv.exists()


def test_root_that_is_not_a_course_is_an_error(course, tmp_path):
    elsewhere = tmp_path / "not-a-course"
    (elsewhere / "submitted" / "ada").mkdir(parents=True)
    assert_refused(run(["grade", "--root", str(elsewhere)], cwd=course.root), str(elsewhere), "not a course")
    assert not (elsewhere / "grades.csv").exists()
    assert not course.grades_csv.exists()


def test_stale_release_is_refused(course):
    submit(course, "ada", full(course))
    path = course.source_dir / "q7_weights.ipynb"
    nb = nbformat.read(path, 4)
    markdown = next(cell for cell in nb.cells if cell.cell_type == "markdown")
    markdown.source += "\n\nA sentence the instructor added after the release."
    nbformat.write(nb, path)

    assert_refused(run(["grade"], cwd=course.root), "autograd-course release", "q7_weights")
    assert not course.grades_csv.exists()
    assert not (course.autograded_dir / "ada").exists()


# ------------------------------------------------------------------------------------------ --timeout
def test_timeout_is_honoured_per_cell(troubled):
    """Each sleeping cell is stopped after about a second (ignoring the limit would take at least 4 x 5 s of
    grading), recorded as a timeout, and the notebook's other parts still count."""
    row = troubled.rows["sleepy"]
    assert row["status"].split(";") == [f"timeout:{notebook_id}" for notebook_id in NOTEBOOKS], row
    # the sleeping cell's answer never ran, so each notebook loses that one 2-point part and keeps the rest
    assert [row[notebook_id] for notebook_id in NOTEBOOKS] == ["8"] * 4, row
    grading_seconds = float(progress_lines(troubled.result.stderr)[-1].group(4))
    # the grading time also holds the runner's start and the normal cells: allow 4 s per sleeping cell in all
    assert grading_seconds < 4 * len(SLEEPY_CELLS), troubled.result.stderr


def test_a_fractional_timeout_is_a_limit_in_seconds(course):
    def sleeping(seconds):
        nb = solved(course, "q6_basic_gradients")
        cell = next(cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == "q6c-answer")
        cell.source = f"import time; time.sleep({seconds})\n" + cell.source
        return nb

    submit(course, "quick", full(course, q6_basic_gradients=sleeping(0.5)))
    submit(course, "slow", full(course, q6_basic_gradients=sleeping(4)))
    graded = grade(course, "--timeout", "1.5", "--jobs", "2")
    assert (graded.rows["quick"]["score"], graded.rows["quick"]["status"]) == (marks(), "ok")
    assert (graded.rows["slow"]["score"], graded.rows["slow"]["status"]) == (marks(2), "timeout:q6_basic_gradients")
    assert "1.5 s" in graded.rows["slow"]["notes"]
