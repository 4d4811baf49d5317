"""The class report (reports/ after grading): scores.csv, item_analysis.csv, the plots and index.html.

A class of five, graded once for the module, whose every number is known in advance:

- alice   the solutions                                         40/40, ok
- bob     the untouched release                                  0/40, ok (a blank notebook is not a grading problem)
- carol   the solutions, but x made without requires_grad in Q6  36/40 (q6_gradient lost), ok
- dave    the solutions, with no Q6 notebook                     30/40, missing:q6_basic_gradients
- eve...  a hostile student id; the solutions, except: Q6b catches a RuntimeError she made up (its message is
          HTML), Q7 is not JSON, and Q9 is saved under a file name that is HTML     28/40, invalid for Q7 and Q9

index.html is opened in headless Chromium (Debian's, through Playwright) and a screenshot is saved to
``<repo root>/test-artifacts/report/index.png``. Chromium and Playwright are required: if either is missing the
test fails, it is not skipped.

The tests named ``test_tiny_*`` need no grading: they build a `report.ClassData` of three students by hand and test
the pieces (the data, the CSV rows, the plots, the page) in milliseconds: they are the unit layer (``-m 'not slow'``).
"""

from __future__ import annotations

import csv
import io
import os
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import pytest

from autograd_course import report
from autograd_course.catalog import part_points, solved, submission
from autograd_course.course import Course, CourseError
from autograd_course.grading import grade
from autograd_course.outcomes import Outcome, Reason
from autograd_course.release import write_canonical
from autograd_course.report import Part
from autograd_course.results import NotebookResult, StudentResult

from course_helpers import submit

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "report"
CHROMIUM = os.environ.get("AUTOGRAD_COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]

Q6, Q7, Q8, Q9 = "q6_basic_gradients", "q7_weights", "q8_breaking_the_graph", "q9_gradient_accumulation"
HOSTILE_ID = 'eve<img src=x onerror=alert(1)>&"'
HOSTILE_FILE = "<img src=x onerror=alert(2)>.ipynb"  # eve's Q9, under another name
HOSTILE_ERROR = "<script>alert(3)</script> & co"
STUDENTS = ["alice", "bob", "carol", "dave", HOSTILE_ID]

# x created without requires_grad=True: the answer cell raises at y.backward(), and q6_gradient fails with
# "x.requires_grad is False: did you create x with requires_grad=True?"; every other part earns full marks.
FORGOT_REQUIRES_GRAD = {"q6-gradient-answer": "x = torch.tensor([2.0])\ny = x**2 + 3 * x\ny.backward()\n"}
# A RuntimeError of her own instead of the one y_frozen.backward() raises: q6b_no_grad_error fails with a
# message that quotes hers.
MADE_UP_ERROR = {"q6b-answer": f"no_grad_error = RuntimeError({HOSTILE_ERROR!r})\n"}

PNG_SIZES = {  # pixels: the figure sizes in report/plots.py at its DPI
    "score_distribution.png": (1200, 600),
    "question_means.png": (1200, 600),
    "part_credit.png": (1200, 825),
}


def _all_parts(course) -> dict[str, dict[str, float]]:
    return {notebook: part_points(course, notebook) for notebook in course.notebook_ids}


def _lost(course) -> dict[str, set[str]]:
    """The parts each student earns nothing on; every other part earns full marks."""
    parts = _all_parts(course)
    return {
        "alice": set(),
        "bob": {part for notebook in parts.values() for part in notebook},
        "carol": {"q6_gradient"},
        "dave": set(parts[Q6]),
        HOSTILE_ID: {"q6b_no_grad_error", *parts[Q7]},
    }


@dataclass
class Graded:
    course: Course
    rows: list[StudentResult]
    page: Path

    @property
    def folder(self) -> Path:
        return self.page.parent


@pytest.fixture(scope="module")
def graded(module_course) -> Graded:
    course = module_course
    everything = {notebook: solved(course, notebook) for notebook in course.notebook_ids}
    submit(course, "alice", everything)
    submit(course, "bob", {notebook: submission(course, notebook) for notebook in course.notebook_ids})
    submit(course, "carol", {**everything, Q6: solved(course, Q6, FORGOT_REQUIRES_GRAD)})
    submit(course, "dave", {**everything, Q6: None})
    folder = submit(
        course, HOSTILE_ID,
        {**everything, Q6: solved(course, Q6, MADE_UP_ERROR), Q7: b'{"cells": [<b>not json', Q9: None},
    )
    write_canonical(folder / HOSTILE_FILE, everything[Q9])
    rows = grade(course, jobs=2, progress=io.StringIO())
    page = report.write_report(course)  # no rows: the class read back from submitted/ and the gradebook, as grades.csv is
    return Graded(course, rows, page)


def _escaped(text: str) -> str:
    """``text`` as the page's template engine escapes it (``&#34;`` for a double quote, where html.escape writes
    ``&quot;``)."""
    return str(markupsafe.escape(text))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------ the class
@pytest.mark.slow
def test_the_class_was_graded_as_planned(graded):
    """The fixture itself: if this fails, the report tests below are testing the wrong class."""
    by_student = {row.student_id: row for row in graded.rows}
    assert sorted(by_student) == sorted(STUDENTS)
    assert {student: row.score for student, row in by_student.items()} == {
        "alice": 40, "bob": 0, "carol": 36, "dave": 30, HOSTILE_ID: 28,
    }
    assert by_student["dave"].status == f"missing:{Q6}"
    assert by_student[HOSTILE_ID].status == f"invalid:{Q7};invalid:{Q9}"
    assert all(by_student[student].status == "ok" for student in ("alice", "bob", "carol"))


@pytest.mark.slow
def test_write_report_returns_index_html_beside_csvs_and_plots(graded):
    assert graded.page == graded.course.root / "reports" / "index.html"
    names = {path.name for path in graded.folder.iterdir()}
    assert {"index.html", "scores.csv", "item_analysis.csv", *PNG_SIZES} <= names
    assert not [name for name in names if name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ scores.csv
@pytest.mark.slow
def test_scores_csv_has_every_student_and_part(graded):
    course = graded.course
    lines = _read_csv(graded.folder / "scores.csv")
    assert list(lines[0]) == ["student_id", "notebook", "part", "points_earned", "points_available"]
    lost = _lost(course)
    expected = {
        (student, notebook, part, 0.0 if part in lost[student] else points, points)
        for student in STUDENTS
        for notebook, parts in _all_parts(course).items()
        for part, points in parts.items()
    }
    got = [
        (line["student_id"], line["notebook"], line["part"], float(line["points_earned"]), float(line["points_available"]))
        for line in lines
    ]
    assert len(got) == len(STUDENTS) * 16 == len(set(got))
    assert set(got) == expected
    # spot checks written out by hand
    assert ("carol", Q6, "q6_gradient", 0.0, 4.0) in got
    assert ("carol", Q6, "q6a_analytic_gradient", 2.0, 2.0) in got
    assert (HOSTILE_ID, Q9, "q9_reset", 3.0, 3.0) in got  # graded from the renamed file
    totals = {student: sum(earned for who, _, _, earned, _ in got if who == student) for student in STUDENTS}
    assert totals == {"alice": 40, "bob": 0, "carol": 36, "dave": 30, HOSTILE_ID: 28}


# ------------------------------------------------------------------------------------ item_analysis.csv
def _items(graded) -> dict[str, dict[str, str]]:
    return {line["part"]: line for line in _read_csv(graded.folder / "item_analysis.csv")}


@pytest.mark.slow
def test_item_analysis_shares_and_means(graded):
    items = _items(graded)
    assert list(items) == [part for parts in _all_parts(graded.course).values() for part in parts]
    lost = _lost(graded.course)
    for part, line in items.items():
        failed = sum(1 for student in STUDENTS if part in lost[student])
        points = float(line["points_available"])
        assert int(line["students"]) == 5
        assert float(line["full_credit_share"]) == pytest.approx((5 - failed) / 5), part
        assert float(line["partial_credit_share"]) == 0, part
        assert float(line["no_credit_share"]) == pytest.approx(failed / 5), part
        assert float(line["mean_points"]) == pytest.approx(points * (5 - failed) / 5), part
        assert int(line["failed_students"]) == failed, part
    # by hand: q6_gradient (4 points) is earned by alice and eve; bob, carol and dave earn nothing
    assert items["q6_gradient"]["full_credit_share"] == "0.4"
    assert items["q6_gradient"]["no_credit_share"] == "0.6"
    assert items["q6_gradient"]["mean_points"] == "1.6"
    # q7_x_gradient (3): bob (blank) and eve (not JSON, graded as blank) earn nothing
    assert (items["q7_x_gradient"]["full_credit_share"], items["q7_x_gradient"]["mean_points"]) == ("0.6", "1.8")
    # q8_detach_error (3): only bob
    assert (items["q8_detach_error"]["no_credit_share"], items["q8_detach_error"]["mean_points"]) == ("0.2", "2.4")


@pytest.mark.slow
def test_item_analysis_most_common_failure_messages(graded):
    items = _items(graded)
    # q6_gradient: bob's blank and dave's missing notebook say x is not defined (2); carol's says requires_grad (1)
    assert items["q6_gradient"]["most_common_failure"].startswith("x is not defined as a tensor: run your answer cell first")
    assert items["q6_gradient"]["most_common_failure_count"] == "2"
    assert items["q6_gradient"]["failed_students"] == "3"
    # q6b_no_grad_error: bob and dave have no no_grad_error (2); eve's made-up error is quoted (1), as it was
    assert items["q6b_no_grad_error"]["most_common_failure"].startswith("no_grad_error is not defined")
    assert items["q6b_no_grad_error"]["most_common_failure_count"] == "2"
    # q6a: the blank dy_dx raises NotImplementedError without a message: the exception's name stands for it
    assert (items["q6a_analytic_gradient"]["most_common_failure"], items["q6a_analytic_gradient"]["most_common_failure_count"]) == (
        "NotImplementedError", "2")
    # q7_x_gradient: bob and eve (whose Q7 was graded as the release)
    assert items["q7_x_gradient"]["most_common_failure"].startswith("x is not defined as a tensor")
    assert items["q7_x_gradient"]["most_common_failure_count"] == "2"
    # q8_detach_error: only bob
    assert items["q8_detach_error"]["most_common_failure"].startswith("detach_error is not defined")
    assert items["q8_detach_error"]["most_common_failure_count"] == "1"


@pytest.mark.slow
def test_failure_messages_are_counted_per_message(graded):
    data = report.load_class(graded.course)
    q6_gradient = data.failures["q6_gradient"]
    assert sum(q6_gradient.values()) == 3
    assert q6_gradient["x.requires_grad is False: did you create x with requires_grad=True?"] == 1  # carol
    eve = [message for message in data.failures["q6b_no_grad_error"] if HOSTILE_ERROR in message]
    assert len(eve) == 1 and data.failures["q6b_no_grad_error"][eve[0]] == 1


@pytest.mark.slow
def test_partial_credit_is_its_own_share(graded):
    """nbgrader's autograded test cells are all or nothing; a manual grade can give part of the points."""
    data = report.load_class(graded.course)
    carol = next(student for student in data.students if student.student_id == "carol")
    carol.notebooks[Q6].parts["q6_gradient"] = 1.5
    item = next(item for item in data.items() if item.part.name == "q6_gradient")
    assert (item.full, item.partial, item.none) == (2, 1, 2)
    assert item.mean == pytest.approx((4 + 0 + 1.5 + 0 + 4) / 5)


# ---------------------------------------------------------------------------------------------- plots
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PNG_SIZES))
def test_plots_are_png_images_of_the_expected_size(graded, name):
    from PIL import Image

    path = graded.folder / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == PNG_SIZES[name]
        # not a blank canvas: a plot has many colours
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 50


# -------------------------------------------------------------------------------------------- the page
@pytest.mark.slow
def test_index_html_escapes_student_text_and_lists_students_not_ok(graded):
    text = graded.page.read_text(encoding="utf-8")
    assert "<img src=x" not in text and "<script" not in text
    assert _escaped(HOSTILE_ID) in text
    assert _escaped(HOSTILE_FILE) in text  # in eve's notes
    for name in PNG_SIZES:
        assert f'src="{name}"' in text  # relative: the folder can be moved or zipped
    assert "http://" not in text and "https://" not in text  # no external assets
    not_ok = text[text.index('id="not-ok"'):text.index("All students")]
    assert "dave" in not_ok and f"missing:{Q6}" in not_ok and f"no {Q6}.ipynb in the submission" in not_ok
    assert f"invalid:{Q7}" in not_ok and f"invalid:{Q9}" in not_ok and "is not valid JSON" in not_ok
    for student in ("alice", "bob", "carol"):
        assert f">{student}<" not in not_ok
    # the item analysis shows every message of a part, not only the most common
    assert "x.requires_grad is False: did you create x with requires_grad=True?" in text


@pytest.mark.slow
def test_hostile_failure_message_is_escaped_on_the_page(graded):
    """eve's made-up error never is the most common message here; make it so, and render the page."""
    data = report.load_class(graded.course)
    data.failures["q6b_no_grad_error"][HOSTILE_ERROR] = 99
    text = report.render_page(data)
    assert "<script" not in text
    assert _escaped(HOSTILE_ERROR) in text


@pytest.mark.slow
@pytest.mark.browser
def test_page_in_headless_chromium(graded):
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"Playwright is required for this test and is not installed ({error}): pip install -e '.[test]'")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is required for this test and is not at {CHROMIUM}: apt-get install chromium "
                    "(or set AUTOGRAD_COURSE_CHROMIUM)")
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS_DIR / "index.png"
    screenshot.unlink(missing_ok=True)
    dialogs, page_errors, failed_requests = [], [], []
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except PlaywrightError as error:
            pytest.fail(f"Chromium at {CHROMIUM} would not start: {error}")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on("requestfailed", lambda request: failed_requests.append(request.url))
            page.goto(graded.page.as_uri(), wait_until="load")
            page.wait_for_function("Array.from(document.images).every(image => image.complete)", timeout=10_000)
            page.screenshot(path=str(screenshot), full_page=True)

            images = page.evaluate(
                "Array.from(document.images).map(image => [image.getAttribute('src'), image.naturalWidth])"
            )
            assert images == [[name, PNG_SIZES[name][0]] for name in PNG_SIZES], images
            assert page.locator("script").count() == 0

            table = page.locator("#item-analysis")
            assert table.is_visible()
            parts = table.locator("tbody tr:not(.group)")
            assert parts.count() == 16
            first = parts.nth(0).inner_text()
            assert "q6_gradient" in first and "40%" in first and "60%" in first and "x is not defined" in first
            assert "2 of 3" in first  # students who saw the message, of those who failed the part
            assert "all 2 messages" in first  # the others, folded: carol's is one

            not_ok = page.locator("#not-ok tbody tr")
            assert not_ok.count() == 2
            dave, eve = not_ok.nth(0).inner_text(), not_ok.nth(1).inner_text()
            assert "dave" in dave and f"missing:{Q6}" in dave
            assert HOSTILE_ID in eve  # shown as the text it is
            assert f"invalid:{Q7}" in eve and f"invalid:{Q9}" in eve and HOSTILE_FILE in eve
            cards = page.locator(".cards").inner_text()
            assert "26.8 / 40" in cards and "30 / 40" in cards
        finally:
            browser.close()
    assert not dialogs, f"student text ran as script: {dialogs}"
    assert not page_errors and not failed_requests, (page_errors, failed_requests)
    assert screenshot.stat().st_size > 10_000


# ------------------------------------------------------------------------------------ summary and CLI
@pytest.mark.slow
def test_report_after_grading_summarises_and_writes_the_report(graded):
    lines = report.report_after_grading(graded.course, graded.rows)
    text = "\n".join(lines)
    totals = [row.score for row in graded.rows]
    assert statistics.fmean(totals) == pytest.approx(26.8) and statistics.median(totals) == 30
    assert "5 students, mean 26.8/40, median 30/40" in text
    assert "not ok: 2 of 5 students" in text
    # 3 of 5 without full credit on q6_gradient and q6b_no_grad_error; then 2 of 5, first in course order
    failed = next(line for line in lines if line.startswith("most often failed:"))
    assert failed == (
        "most often failed: q6_gradient (3 of 5 without full credit), q6b_no_grad_error (3 of 5 without full credit), "
        "q6a_analytic_gradient (2 of 5 without full credit)"
    )
    assert lines[-1].startswith(f"report: {graded.page}")
    assert graded.page.is_file()


@pytest.mark.slow
def test_report_command(graded, capsys):
    from autograd_course.cli import main

    assert main(["report", "--root", str(graded.course.root)]) == 0
    assert str(graded.page) in capsys.readouterr().out


@pytest.mark.slow
def test_report_before_grading_says_what_to_do(course):
    with pytest.raises(CourseError, match="run `autograd-course grade` first"):
        report.write_report(course)
    assert not course.gradebook.exists()  # and does not leave an empty gradebook behind


# ----------------------------------------------------------- the pieces, on a tiny class built by hand
# No grading and no gradebook: a ClassData of three students, two questions and three parts, whose numbers are
# worked out here. Each test takes milliseconds (the one that writes PNGs, a fraction of a second).
TINY_SCRIPT_ID = "<script>alert('id')</script>"
TINY_IMG_NOTE = "<img src=x onerror=alert('note')>"
TINY_FAILURE = "<script>alert('failure')</script> & <img src=y onerror=alert(4)>"
TINY_GENERATED = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def _tiny() -> report.ClassData:
    """q6: a (2 points), b (3); q7: c (5). Max 10.

    - ann      full marks                                                   10, ok
    - the id   TINY_SCRIPT_ID: a 1 of 2 (partial), b 0, c 5; q7 invalid with TINY_IMG_NOTE     6
    - zed      late: every part as graded (10), the late penalty takes q7 (notebook score 0)     10 as graded
    """
    parts = [Part(Q6, "a", 2.0), Part(Q6, "b", 3.0), Part(Q7, "c", 5.0)]
    ann = StudentResult("ann", {Q6: NotebookResult(5.0, [], {"a": 2.0, "b": 3.0}), Q7: NotebookResult(5.0, [], {"c": 5.0})}, 10.0)
    hostile = StudentResult(
        TINY_SCRIPT_ID,
        {
            Q6: NotebookResult(1.0, [], {"a": 1.0, "b": 0.0}),
            Q7: NotebookResult(5.0, [Outcome(Reason.INVALID, f"graded from {TINY_IMG_NOTE}.ipynb")], {"c": 5.0}),
        },
        10.0,
    )
    zed = StudentResult(
        "zed",
        {
            Q6: NotebookResult(5.0, [], {"a": 2.0, "b": 3.0}),
            Q7: NotebookResult(0.0, [Outcome(Reason.LATE, "handed in 1 d after the due date; late penalty 5 of 5 points")],
                               {"c": 5.0}),
        },
        10.0,
    )
    failures = {"a": Counter({"a is wrong": 1}), "b": Counter({TINY_FAILURE: 1})}
    return report.ClassData("tiny_assignment", "tiny-course", parts, [ann, hostile, zed], 10.0, failures)


def test_tiny_student_results_are_the_report_students():
    data = _tiny()
    ann, hostile, zed = data.students
    assert all(isinstance(student, StudentResult) for student in data.students)
    assert (ann.status, hostile.status, zed.status) == ("ok", f"invalid:{Q7}", f"late:{Q7}")
    assert hostile.notes == f"{Q7}: graded from {TINY_IMG_NOTE}.ipynb"
    assert hostile.earned(Q6, "a") == 1.0 and hostile.earned(Q6, "nonexistent") == 0.0
    assert hostile.earned("q10_not_in_the_course", "a") == 0.0
    # the report counts points as graded, before the late penalty; StudentResult.score (grades.csv) has it
    assert [data.total(student) for student in data.students] == [10.0, 6.0, 10.0]
    assert [student.score for student in data.students] == [10.0, 6.0, 5.0]
    assert [data.notebook_points(student, Q6) for student in data.students] == [5.0, 1.0, 5.0]
    assert (data.notebook_max(Q6), data.notebook_max(Q7)) == (5.0, 5.0)
    assert data.notebooks == [Q6, Q7]
    assert [student.student_id for student in data.not_ok] == [TINY_SCRIPT_ID, "zed"]


def test_tiny_items():
    a, b, c = _tiny().items()
    assert (a.students, a.full, a.partial, a.none, a.mean) == (3, 2, 1, 0, pytest.approx(5 / 3))
    assert (b.full, b.partial, b.none, b.mean) == (2, 0, 1, 2.0)
    assert (c.full, c.partial, c.none, c.mean, c.failed, c.top_failure) == (3, 0, 0, 5.0, 0, ("", 0))
    assert b.top_failure == (TINY_FAILURE, 1) and b.failed == 1
    assert b.share(b.none) == pytest.approx(1 / 3)


def test_tiny_ranked_failures_keep_the_first_seen_among_equals():
    item = report.Item(Part(Q6, "a", 1.0), 5, 0, 0, 5, 0.0, Counter({"first": 1, "second": 2, "third": 1, "fourth": 2}))
    assert item.top_failure == ("second", 2)
    assert item.ranked_failures() == [("second", 2), ("fourth", 2), ("first", 1), ("third", 1)]
    assert item.failed == 6


def test_tiny_most_often_failed():
    assert report.most_often_failed(_tiny()) == [
        "most often failed: b (1 of 3 without full credit), a (1 of 3 without full credit)"
    ]
    assert report.most_often_failed(report.ClassData("x", "", _tiny().parts, [], 10.0)) == []


def test_tiny_csv_rows_and_spreadsheet_safe_cells(tmp_path):
    data = _tiny()
    data.students[0].student_id = "=HYPERLINK(\"http://example.com\")"  # a formula for a student id
    items = data.items()
    report.tables.write_tables(data, items, tmp_path)
    scores = _read_csv(tmp_path / "scores.csv")
    assert [list(line.values()) for line in scores[:3]] == [
        ["'=HYPERLINK(\"http://example.com\")", Q6, "a", "2", "2"],
        ["'=HYPERLINK(\"http://example.com\")", Q6, "b", "3", "3"],
        ["'=HYPERLINK(\"http://example.com\")", Q7, "c", "5", "5"],
    ]
    assert [line["points_earned"] for line in scores[3:]] == ["1", "0", "5", "2", "3", "5"]
    lines = {line["part"]: line for line in _read_csv(tmp_path / "item_analysis.csv")}
    assert list(lines["a"].values()) == [Q6, "a", "2", "3", "0.6667", "0.3333", "0", "1.6667", "1", "a is wrong", "1"]
    assert (lines["b"]["most_common_failure"], lines["c"]["most_common_failure"]) == (TINY_FAILURE, "")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["item_analysis.csv", "scores.csv"]


def test_tiny_plots_are_figures_of_the_data():
    from matplotlib.figure import Figure

    data = _tiny()
    distribution = report.plots.draw_distribution(data)
    assert isinstance(distribution, Figure)
    assert distribution.get_suptitle() == "Distribution of total scores (3 students)"
    axes = distribution.axes[0]
    assert sum(patch.get_height() for patch in axes.patches) == 3  # one bar height per student
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        "students", "max score (10)", "class mean (8.7)"]

    questions = report.plots.draw_questions(data)
    axes = questions.axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == ["Q6\nbasic gradients", "Q7\nweights"]
    assert sorted(text.get_text() for text in axes.texts) == ["3.7", "5.0", "max 5", "max 5"]

    parts = report.plots.draw_parts(data.items())
    axes = parts.axes[0]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["a (2 pts)", "b (3 pts)", "c (5 pts)"]
    assert len(axes.containers) == 3  # full, partial and no credit
    assert [bar.get_width() for bar in axes.containers[2]] == pytest.approx([0, 1 / 3, 0])
    assert len(axes.lines) == 1  # the line between q6 and q7


def test_tiny_plots_of_an_empty_class():
    data = report.ClassData("x", "", [], [], 0.0)
    figure = report.plots.draw_distribution(data)
    assert "no students graded" in [text.get_text() for text in figure.axes[0].texts]
    report.plots.draw_questions(data)
    report.plots.draw_parts([])


def test_tiny_write_puts_the_csvs_plots_and_page_in_the_folder(tmp_path):
    from PIL import Image

    page = report.write(_tiny(), tmp_path / "reports")
    assert page == tmp_path / "reports" / "index.html"
    assert sorted(path.name for path in page.parent.iterdir()) == sorted(
        ["index.html", "scores.csv", "item_analysis.csv", *PNG_SIZES])
    for name, size in PNG_SIZES.items():
        with Image.open(page.parent / name) as image:
            assert (image.format, image.size) == ("PNG", size)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))


def test_tiny_page_escapes_every_student_text():
    """A student id, a note and a failure message that are HTML reach the page as text, escaped by Jinja2."""
    text = report.render_page(_tiny(), generated=TINY_GENERATED)
    assert "<script" not in text and "<img src=x" not in text and "<img src=y" not in text
    assert "&lt;script&gt;alert(&#39;id&#39;)&lt;/script&gt;" in text  # the id, in the not-ok and all-students tables
    assert text.count(_escaped(TINY_SCRIPT_ID)) == 2
    assert _escaped(TINY_IMG_NOTE) in text  # the notes
    assert _escaped(TINY_FAILURE) in text  # the most common failure of b
    parser = _Tags()
    parser.feed(text)
    assert not [tag for tag, _ in parser.tags if tag == "script"]
    assert not [(tag, name) for tag, attributes in parser.tags for name in attributes if name.startswith("on")]
    assert [attributes["src"] for tag, attributes in parser.tags if tag == "img"] == list(PNG_SIZES)
    assert [attributes["href"] for tag, attributes in parser.tags if tag == "a"] == ["scores.csv", "item_analysis.csv"]


def test_tiny_page_shows_the_class():
    text = report.render_page(_tiny(), generated=TINY_GENERATED)
    assert "<title>tiny_assignment: class report</title>" in text
    assert "tiny-course · 3 students · 3 graded parts in 2 notebooks · generated 2026-03-01 12:30 UTC" in text
    assert '<div class="value">8.7 / 10</div>' in text and '<div class="value">10 / 10</div>' in text  # mean, median
    assert '<div class="card warn"><div class="value">2</div>' in text
    assert f'Q6 · <span class="nb">{Q6}</span> · 5 points · class mean 3.7' in text
    assert f'Q7 · <span class="nb">{Q7}</span> · 5 points · class mean 5.0' in text
    not_ok = text[text.index('id="not-ok"'):text.index("All students")]
    assert ">ann<" not in not_ok and ">zed<" in not_ok and f"late:{Q7}" in not_ok and ">6 / 10<" in not_ok
    assert '<td class="num">33%</td>' in text and 'style="width:33.3%"' in text  # a's partial share
    assert "1 of 1</span>" in text and "messages</summary>" not in text  # one message per part: nothing folded


def test_tiny_page_folds_the_other_messages_and_clips_long_ones():
    data = _tiny()
    many = Counter({f"message {index}": 20 - index for index in range(report.page.OTHER_MESSAGES_SHOWN + 3)})
    many["x" * 1000] = 1
    data.failures["a"] = many
    text = report.render_page(data, generated=TINY_GENERATED)
    assert f"all {report.page.OTHER_MESSAGES_SHOWN + 4} messages" in text
    assert "and 4 more (item_analysis.csv keeps the most common)" in text
    assert "message 7 <" in text and "message 8 <" not in text
    assert "x" * report.page.PAGE_MESSAGE_LIMIT not in text  # not on the page whole


def test_tiny_page_of_a_class_all_ok():
    data = _tiny()
    data.students = data.students[:1]
    text = report.render_page(data, generated=TINY_GENERATED)
    assert """<p id="not-ok" class="ok">Every student's notebooks were graded as submitted (status ok).</p>""" in text
    assert "Students not ok (0)" in text and 'class="card warn"' not in text
    empty = report.render_page(report.ClassData("x", "", [], [], 0.0), generated=TINY_GENERATED)
    assert '<div class="value">– / 0</div>' in empty


def test_tiny_page_environment_autoescapes_the_packaged_templates():
    environment = report.page.environment()
    assert environment.autoescape is True
    assert set(environment.list_templates()) >= {"index.html", "report.css"}
