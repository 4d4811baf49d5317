"""Late submissions: grades.csv and the printed table show the gradebook's scores, nbgrader's late penalty
included, `late:<notebook>` in status and how late and what it cost in notes; `autograd-course report` rewrites
grades.csv from the gradebook after manual grading.

A class of four in a scratch copy of the course, each with the timestamp.txt that `nbgrader collect` writes. The
due date is set with the real `nbgrader db assignment add --duedate`, the penalty in the copy's grader_config.py
(`c.LateSubmissionPlugin.penalty_method`), as an instructor would:

- ontime:     the solutions, a minute before the due date                           40, ok
- late:       the solutions, 1 d 2 h 30 min after it                                raw 40
- sloppy:     late by 45 s; Q6 loses q6_gradient (4 points) and Q9 is missing      raw 26
- untimed:    the solutions and no timestamp.txt (never late)                       40, ok

The class is graded with penalty_method 'zero' (a late notebook earns 0), then `late` again with 'none' (late,
no penalty). Every score is compared with the gradebook's, read through nbgrader's own API, and with the `score`
column of `nbgrader export`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autograd_course.catalog import by_name, solved

from course_helpers import NOTEBOOKS, copy_course, marks, submit

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DUE = "2026-03-01 12:00:00 UTC"
TIMESTAMPS = {
    "ontime": "2026-03-01 11:59:00.000000 UTC",
    "late": "2026-03-02 14:30:00.000000 UTC",
    "sloppy": "2026-03-01 12:00:45.000000 UTC",
}
CLASS = ["late", "ontime", "sloppy", "untimed"]


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(root: Path, *command: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=root, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def read_grades(root: Path) -> dict[str, dict[str, str]]:
    with open(root / "grades.csv", newline="", encoding="utf-8") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def read_table(stdout: str) -> dict[str, list[str]]:
    """The table `grade` prints: student -> [q6, q7, q8, q9, score/max, status]."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["student"])
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        student, *cells = line.split()
        rows[student] = cells
    return rows


READ_GRADEBOOK = """
import json, sys
from nbgrader.api import Gradebook
database, assignment, students = sys.argv[1], sys.argv[2], sys.argv[3:]
out = {}
with Gradebook("sqlite:///" + database) as gradebook:
    for student in students:
        submission = gradebook.find_submission(assignment, student)
        out[student] = {
            "raw": submission.score, "penalty": submission.late_submission_penalty,
            "seconds_late": submission.total_seconds_late,
            "notebooks": {nb.name: [nb.score, nb.late_submission_penalty or 0.0] for nb in submission.notebooks},
        }
print(json.dumps(out))
"""


def read_gradebook(root: Path) -> dict:
    """What the gradebook says, through nbgrader's API, in a fresh process."""
    result = run(root, sys.executable, "-c", READ_GRADEBOOK, str(root / "gradebook.db"), "autograd_basics", *CLASS)
    return json.loads(result.stdout.strip().splitlines()[-1])


def nbgrader_export(root: Path) -> dict[str, float]:
    """`nbgrader export`'s score column (raw score less the late penalty), written beside grades.csv."""
    run(root, str(BIN / "nbgrader"), "export", "--to", "nbgrader-export.csv")
    with open(root / "nbgrader-export.csv", newline="") as handle:
        return {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}


def set_penalty_method(root: Path, method: str) -> None:
    config = root / "grader_config.py"
    text = re.sub(r"\nc\.LateSubmissionPlugin\.penalty_method = .*\n", "\n", config.read_text())
    config.write_text(text + f'c.LateSubmissionPlugin.penalty_method = "{method}"\n')


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("late") / "course")
    everything = {notebook_id: solved(course, notebook_id) for notebook_id in NOTEBOOKS}
    for student in CLASS:
        notebooks = dict(everything)
        if student == "sloppy":
            notebooks["q6_basic_gradients"] = by_name("q6 forgot requires_grad on x").build(course)
            notebooks["q9_gradient_accumulation"] = None
        folder = submit(course, student, notebooks)
        if student in TIMESTAMPS:
            (folder / "timestamp.txt").write_text(TIMESTAMPS[student])
    run(course.root, str(BIN / "nbgrader"), "db", "assignment", "add", "autograd_basics", f"--duedate={DUE}")
    return course


def graded(course, method: str, *options: str) -> dict:
    set_penalty_method(course.root, method)
    result = run(course.root, str(BIN / "autograd-course"), "grade", "--jobs", "2", *options)
    return {
        "csv": read_grades(course.root),
        "table": read_table(result.stdout),
        "gradebook": read_gradebook(course.root),
        "export": nbgrader_export(course.root),
    }


@pytest.fixture(scope="module")
def zero(course) -> dict:
    return graded(course, "zero")


@pytest.fixture(scope="module")
def none(course, zero) -> dict:
    """`late` graded again with 'none'; the others keep their grades (and penalties) from the 'zero' run."""
    return graded(course, "none", "--student", "late")


def assert_agrees_with_the_gradebook(run_: dict) -> None:
    """Every score grades.csv and the table show is the gradebook's, penalty included."""
    for student in CLASS:
        row, book = run_["csv"][student], run_["gradebook"][student]
        final = max(0.0, book["raw"] - book["penalty"])
        assert float(row["score"]) == pytest.approx(final), (student, row, book)
        assert float(row["score"]) == pytest.approx(run_["export"][student]), (student, row, run_["export"])
        for notebook_id in NOTEBOOKS:
            score, penalty = book["notebooks"][notebook_id]
            assert float(row[notebook_id]) == pytest.approx(score - penalty), (student, notebook_id, row, book)
        table = run_["table"][student]
        assert table[:4] == [row[n] for n in NOTEBOOKS] and table[4] == f"{row['score']}/40", (table, row)
        assert table[5] == row["status"]


# ------------------------------------------------------------------------------------------ 'zero'
def test_the_gradebook_holds_the_penalties_as_planned(zero):
    """The fixture itself: nbgrader saw who was late, and 'zero' took everything a late notebook earned."""
    book = zero["gradebook"]
    assert book["late"]["seconds_late"] == 26.5 * 3600 and book["sloppy"]["seconds_late"] == 45
    assert book["ontime"]["seconds_late"] == 0 and book["untimed"]["seconds_late"] == 0
    assert (book["late"]["raw"], book["late"]["penalty"]) == (40, 40)
    assert (book["sloppy"]["raw"], book["sloppy"]["penalty"]) == (26, 26)
    assert (book["ontime"]["raw"], book["ontime"]["penalty"]) == (40, 0)


def test_zero_penalty_scores_equal_the_gradebook_and_export(zero):
    assert_agrees_with_the_gradebook(zero)
    rows = zero["csv"]
    assert [rows[s]["score"] for s in CLASS] == ["0", marks(), "0", marks()]


def test_zero_penalty_status_has_late_items_for_the_notebooks_handed_in(zero):
    rows = zero["csv"]
    assert rows["late"]["status"] == ";".join(f"late:{n}" for n in NOTEBOOKS)
    # Q9 was not handed in: it is missing, not late; the contract's order puts missing first.
    assert rows["sloppy"]["status"] == "missing:q9_gradient_accumulation;" + ";".join(
        f"late:{n}" for n in NOTEBOOKS[:3])
    assert rows["ontime"]["status"] == "ok" and rows["untimed"]["status"] == "ok"
    assert rows["ontime"]["notes"] == "" and rows["untimed"]["notes"] == ""


def test_zero_penalty_notes_say_how_late_and_what_it_cost(zero):
    late = zero["csv"]["late"]["notes"].split(" | ")
    assert late == [
        f"{n}: handed in 1 d 2 h 30 min after the due date (2026-03-01 12:00 UTC); late penalty 10 of 10 points"
        for n in NOTEBOOKS
    ]
    sloppy = zero["csv"]["sloppy"]["notes"]
    assert ("q6_basic_gradients: handed in 45 s after the due date (2026-03-01 12:00 UTC); "
            "late penalty 6 of 6 points") in sloppy
    assert "q9_gradient_accumulation: no q9_gradient_accumulation.ipynb in the submission" in sloppy
    assert "q9_gradient_accumulation: handed in" not in sloppy


# ------------------------------------------------------------------------------------------ 'none'
def test_no_penalty_keeps_the_scores_and_still_says_late(none, zero):
    assert_agrees_with_the_gradebook(none)
    rows = none["csv"]
    assert [rows[s]["score"] for s in CLASS] == [marks(), marks(), "0", marks()]
    assert rows["sloppy"] == zero["csv"]["sloppy"]
    assert rows["late"]["status"] == ";".join(f"late:{n}" for n in NOTEBOOKS)
    assert rows["late"]["notes"].split(" | ")[0] == (
        "q6_basic_gradients: handed in 1 d 2 h 30 min after the due date (2026-03-01 12:00 UTC); no late penalty")
    assert none["gradebook"]["late"]["penalty"] == 0


# ------------------------------------------------------------------------------------------ report
MANUAL_GRADE = """
import sys
from nbgrader.api import Gradebook
database, student, notebook, part, points = sys.argv[1:]
with Gradebook("sqlite:///" + database) as gradebook:
    grade = gradebook.find_grade(part, notebook, "autograd_basics", student)
    grade.manual_score = float(points)
    gradebook.db.commit()
"""


def test_report_rewrites_grades_csv_after_manual_grading(course, none):
    """An instructor lowers one part by hand (what the formgrader saves), then runs `autograd-course report`."""
    before = read_grades(course.root)
    assert before["ontime"]["q7_weights"] == "10"
    run(course.root, sys.executable, "-c", MANUAL_GRADE, str(course.root / "gradebook.db"), "ontime", "q7_weights",
        "q7_x_gradient", "1")
    assert read_grades(course.root) == before  # nothing rewrites it by itself

    result = run(course.root, str(BIN / "autograd-course"), "report")
    assert f"wrote {course.root / 'grades.csv'}" in result.stdout
    after = read_grades(course.root)
    assert (after["ontime"]["q7_weights"], after["ontime"]["score"], after["ontime"]["status"]) == ("8", "38", "ok")
    assert {s: after[s] for s in CLASS if s != "ontime"} == {s: before[s] for s in CLASS if s != "ontime"}
    book = read_gradebook(course.root)
    assert float(after["ontime"]["score"]) == book["ontime"]["raw"] - book["ontime"]["penalty"] == 38
    # the report's pages were written from the same gradebook
    with open(course.root / "reports" / "scores.csv", newline="") as handle:
        scores = {(row["student_id"], row["part"]): row["points_earned"] for row in csv.DictReader(handle)}
    assert scores[("ontime", "q7_x_gradient")] == "1"
