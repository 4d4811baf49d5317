"""Each student's result and grades.csv as ../shared/CONTRACT.md fixes them (results.py, outcomes.py), on results
built by hand: no grading, milliseconds. The end-to-end tests (test_grade_command.py) check the same file after a
real run."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from types import SimpleNamespace

import nbformat
import pytest

from autograd_course import outcomes
from autograd_course.outcomes import Outcome, Reason
from autograd_course.results import (
    NotebookResult,
    StudentResult,
    duration,
    format_table,
    late_note,
    spreadsheet_safe,
    write_csv,
    write_grades_csv,
)

from course_helpers import NOTEBOOKS, THE_COURSE

FIRST, SECOND = NOTEBOOKS[0], NOTEBOOKS[1]


def student(student_id: str = "ann", **outcomes_by_notebook: list[Outcome]) -> StudentResult:
    notebooks = {notebook_id: NotebookResult(2.0, list(outcomes_by_notebook.get(notebook_id, []))) for notebook_id in NOTEBOOKS}
    return StudentResult(student_id, notebooks, 10.0 * len(NOTEBOOKS))


# ------------------------------------------------------------------------------------------ status
def test_a_student_with_nothing_to_say_is_ok():
    result = student()
    assert (result.status, result.notes, result.score) == ("ok", "", 2.0 * len(NOTEBOOKS))


def test_status_lists_reasons_in_the_contracts_order_then_notebooks_in_the_courses():
    result = student(**{
        SECOND: [Outcome(Reason.ERROR, "nbgrader failed"), Outcome(Reason.MISSING, "not handed in")],
        FIRST: [Outcome(Reason.TIMEOUT, "cell ran too long", where="q_a"), Outcome(Reason.MISSING, "not handed in")],
    })
    assert result.status == f"missing:{FIRST};missing:{SECOND};timeout:{FIRST};error:{SECOND}"
    assert result.notes == (
        f"{FIRST}: q_a: cell ran too long | {FIRST}: not handed in | {SECOND}: nbgrader failed | {SECOND}: not handed in"
    )


def test_the_contracts_reasons_and_only_them():
    assert [reason.value for reason in Reason] == [
        "missing", "invalid", "timeout", "crashed", "resource_limit", "tampered", "late", "error",
    ]


def test_notes_from_outside_the_notebooks_come_last():
    result = student(**{FIRST: [Outcome(Reason.INVALID, "not JSON")]})
    result.notes_outside.append("feedback: shown as plain text")
    assert result.notes.endswith(" | feedback: shown as plain text")


# ----------------------------------------------------------------------------------------- outcomes
def test_an_outcome_is_recorded_once_and_read_back_equal():
    nb = nbformat.v4.new_notebook()
    outcome = Outcome(Reason.CRASHED, "the kernel died", where="q6_gradient")
    outcomes.record(nb, outcome)
    outcomes.record(nb, outcome)
    assert outcomes.recorded(nb) == [outcome]


def test_a_submission_cannot_arrive_with_outcomes_of_its_own():
    nb = nbformat.v4.new_notebook()
    outcomes.record(nb, Outcome(Reason.ERROR, "seeded by the student"))
    outcomes.forget(nb)
    assert outcomes.recorded(nb) == []


def test_an_unknown_reason_is_refused():
    with pytest.raises(ValueError):
        Outcome("excused", "")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- late
def test_durations_read_like_a_person_wrote_them():
    assert [duration(s) for s in (45, 750, 7200, 3 * 86400 + 4 * 3600 + 5 * 60 + 29)] == [
        "45 s", "12 min 30 s", "2 h 0 min", "3 d 4 h 5 min",
    ]


def test_a_late_note_says_how_late_and_what_it_cost():
    submission = SimpleNamespace(duedate=datetime(2026, 3, 1, 9, 0), extension=timedelta(hours=1),
                                 total_seconds_late=5400.0)
    assert late_note(submission, 10.0, 2.5) == (
        "handed in 1 h 30 min after the due date (2026-03-01 09:00 UTC, with an extension of 1 h 0 min); "
        "late penalty 2.5 of 10 points"
    )
    on_time_cost = late_note(SimpleNamespace(duedate=datetime(2026, 3, 1), extension=None, total_seconds_late=30), 4, 0)
    assert on_time_cost.endswith("; no late penalty")


# ------------------------------------------------------------------------------------------- CSV
@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_text_a_spreadsheet_would_run_is_quoted(text):
    assert spreadsheet_safe(text) == "'" + text


@pytest.mark.parametrize("text", ["alice", "", "1=1", "o'brien", "a-b"])
def test_ordinary_text_is_left_alone(text):
    assert spreadsheet_safe(text) == text


def test_grades_csv_has_the_contracts_columns_and_safe_cells(tmp_path):
    hostile = student("=HYPERLINK(\"http://x\")", **{FIRST: [Outcome(Reason.INVALID, "-bad, \"quoted\"\nline")]})
    path = write_grades_csv(THE_COURSE, [student("ann"), hostile], tmp_path / "grades.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["student_id", *NOTEBOOKS, "score", "max_score", "status", "notes"]
    assert rows[1] == ["ann", *["2"] * len(NOTEBOOKS), f"{2 * len(NOTEBOOKS):g}", f"{10 * len(NOTEBOOKS):g}", "ok", ""]
    assert rows[2][0] == "'=HYPERLINK(\"http://x\")"
    assert rows[2][-2:] == [f"invalid:{FIRST}", f"{FIRST}: -bad, \"quoted\"\nline"]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot be written")


def test_a_csv_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "grades.csv"
    path.write_text("the old file\n")
    with pytest.raises(RuntimeError, match="cannot be written"):
        write_csv(path, ["student_id"], [["ann"], [Unprintable()]])
    assert path.read_text() == "the old file\n"
    assert [child.name for child in tmp_path.iterdir()] == ["grades.csv"]


def test_the_printed_table_has_a_row_per_student():
    table = format_table(THE_COURSE, [student("ann"), student("bob", **{FIRST: [Outcome(Reason.MISSING, "")]})])
    lines = table.splitlines()
    assert lines[0].split()[0] == "student" and len(lines) == 4
    assert lines[3].split()[0] == "bob" and lines[3].endswith(f"missing:{FIRST}")
