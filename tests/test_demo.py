"""`autograd-course demo`, as the README's `make demo` runs it: no setup, exit 0, a table of the twelve demo
students, and with --keep a graded course to look at (grades.csv, feedback/, reports/)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autograd_course.demo import CLASS

from course_helpers import NOTEBOOKS, marks

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
COMMAND = str(Path(sys.executable).parent / "autograd-course")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    kept = tmp_path_factory.mktemp("demo") / "kept"
    result = subprocess.run(
        [COMMAND, "demo", "--keep", str(kept)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    return result, kept


@pytest.fixture(scope="module")
def grades(demo):
    _, kept = demo
    with open(kept / "grades.csv", newline="", encoding="utf-8") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def test_demo_exits_0(demo):
    result, _ = demo
    assert result.returncode == 0, result.stderr


def test_demo_class_is_twelve_students():
    assert len(CLASS) == 12


def test_demo_prints_a_table_with_every_student_and_the_question_columns(demo):
    result, _ = demo
    lines = result.stdout.splitlines()
    header = next((line for line in lines if line.split()[:1] == ["student"]), None)
    assert header is not None, result.stdout
    assert header.split()[1:5] == ["q6", "q7", "q8", "q9"], header
    for student in CLASS:
        rows = [line for line in lines if re.match(rf"^{re.escape(student)}\s+\d", line)]
        assert len(rows) == 1, (student, result.stdout)


def test_kept_grades_csv_has_a_row_per_demo_student(grades):
    assert sorted(grades) == sorted(CLASS)


def test_kept_grades_csv_known_rows(grades):
    assert (grades["ada"]["score"], grades["ada"]["max_score"], grades["ada"]["status"]) == (marks(), marks(), "ok")
    assert (grades["ben"]["score"], grades["ben"]["status"]) == ("0", "ok")
    # fay is right everywhere, in other ways than the solution (retain_graph=True, nn.Parameter, x.grad = None)
    assert (grades["fay"]["score"], grades["fay"]["status"]) == (marks(), "ok")
    assert "missing:q9_gradient_accumulation" in grades["ivan"]["status"].split(";")
    assert grades["ivan"]["q9_gradient_accumulation"] == "0"
    assert "invalid:q6_basic_gradients" in grades["jo"]["status"].split(";")
    assert grades["jo"]["q6_basic_gradients"] == "0"


def test_kept_folder_has_feedback_for_every_student(demo):
    _, kept = demo
    for student in CLASS:
        folder = kept / "feedback" / student / "autograd_basics"
        assert sorted(path.name for path in folder.glob("*.html")) == [f"{nb}.html" for nb in NOTEBOOKS], student


def test_kept_folder_has_the_full_report(demo):
    _, kept = demo
    reports = kept / "reports"
    page = reports / "index.html"
    assert page.is_file() and page.stat().st_size > 0
    with open(reports / "scores.csv", newline="") as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == 12 * 16  # every student, every graded part
    with open(reports / "item_analysis.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 16
    plots = sorted(reports.glob("*.png"))
    assert len(plots) >= 2 and all(plot.read_bytes().startswith(b"\x89PNG") for plot in plots)
    for plot in plots:
        assert plot.name in page.read_text(encoding="utf-8")
