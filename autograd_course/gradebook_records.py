"""One student's rows of an nbgrader gradebook as plain data, read from one gradebook and written into another.

A cluster worker (cluster.py) grades against a private SQLite gradebook of its own, so that only the
`grade` command talks to the course's gradebook, whatever database it is (SQLite or PostgreSQL, through nbgrader's
`CourseDirectory.db_url`). Before grading, the student's rows in the course's gradebook are copied into the
private one (`restore`): the timestamp and extension that decide lateness, and the manual scores, extra credit and
comments a grader may already have given, which nbgrader keeps across a regrade, counts in late penalties and
shows in feedback. After grading, what nbgrader's autograde wrote (the timestamp, each part's automatic score and
whether it needs manual grading, the automatic comments, each notebook's late penalty) is read back
(`read`) and written into the course's gradebook (`write_autograded`), through nbgrader's own `Gradebook` API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbgrader.api import Gradebook, SubmittedAssignment

STUDENT_FIELDS = ("first_name", "last_name", "email", "lms_user_id")
GRADE_FIELDS = ("auto_score", "manual_score", "extra_credit", "needs_manual_grade")
COMMENT_FIELDS = ("auto_comment", "manual_comment")


def _submission(gradebook: Gradebook, assignment_id: str, student_id: str) -> SubmittedAssignment:
    """nbgrader's find_submission, with the student's notebooks, grades, comments and their cells loaded in a
    few queries rather than one per cell (the coordinator does this for every student of the class)."""
    from nbgrader.api import Comment, Grade, SubmittedNotebook
    from sqlalchemy.orm import selectinload

    submission = gradebook.find_submission(assignment_id, student_id)
    notebooks = selectinload(type(submission).notebooks)
    gradebook.db.query(type(submission)).filter_by(id=submission.id).options(
        notebooks.selectinload(SubmittedNotebook.notebook),
        notebooks.selectinload(SubmittedNotebook.grades).selectinload(Grade.cell),
        notebooks.selectinload(SubmittedNotebook.comments).selectinload(Comment.cell),
    ).one()
    return submission


def read(gradebook: Gradebook, assignment_id: str, student_id: str) -> dict[str, Any] | None:
    """The student's rows for the assignment; None when there is no submission (or the id cannot be stored)."""
    from nbgrader.api import MissingEntry

    try:
        submission = _submission(gradebook, assignment_id, student_id)
    except (MissingEntry, ValueError):  # ValueError: an id the database cannot hold (not UTF-8)
        gradebook.db.rollback()
        return None
    records = {
        "student": {field: getattr(submission.student, field) for field in STUDENT_FIELDS},
        "timestamp": submission.timestamp,
        "extension": submission.extension,
        "notebooks": {
            notebook.name: {
                "flagged": notebook.flagged,
                "late_submission_penalty": notebook.late_submission_penalty,
                "grades": {grade.name: {field: getattr(grade, field) for field in GRADE_FIELDS} for grade in notebook.grades},
                "comments": {
                    comment.name: {field: getattr(comment, field) for field in COMMENT_FIELDS} for comment in notebook.comments
                },
            }
            for notebook in submission.notebooks
        },
    }
    gradebook.db.commit()  # ends the read: a SQLite gradebook is not kept locked against the formgrader
    return records


def restore(gradebook: Gradebook, assignment_id: str, student_id: str, records: dict[str, Any] | None) -> None:
    """Make the student's rows in ``gradebook`` (a worker's private one) what ``records`` says."""
    if records is None:
        return
    gradebook.update_or_create_student(student_id, **records["student"])
    submission = gradebook.update_or_create_submission(assignment_id, student_id)
    submission.timestamp = records["timestamp"]
    submission.extension = records["extension"]
    for notebook in submission.notebooks:
        saved = records["notebooks"].get(notebook.name)
        if saved is None:
            continue
        notebook.flagged = saved["flagged"]
        notebook.late_submission_penalty = saved["late_submission_penalty"]
        for grade in notebook.grades:
            for field, value in saved["grades"].get(grade.name, {}).items():
                setattr(grade, field, value)
        for comment in notebook.comments:
            for field, value in saved["comments"].get(comment.name, {}).items():
                setattr(comment, field, value)
    gradebook.db.commit()


def forget(gradebook: Gradebook, assignment_id: str, student_id: str) -> None:
    """Remove the student from ``gradebook`` (a worker's private one, once their results have been read)."""
    from nbgrader.api import MissingEntry

    try:
        gradebook.remove_submission(assignment_id, student_id)
    except (MissingEntry, ValueError):
        pass
    try:
        gradebook.remove_student(student_id)
    except (MissingEntry, ValueError):
        gradebook.db.rollback()


def write_autograded(gradebook: Gradebook, assignment_id: str, student_id: str, records: dict[str, Any]) -> None:
    """Write what autograde decided into ``gradebook`` (the course's), as nbgrader's autograde would have: the
    student and submission created if need be, manual scores and comments left as they are, and a part with a
    manual score marked as needing review again (nbgrader's SaveAutoGrades rule, applied to the manual score the
    course's gradebook holds now)."""
    from nbgrader.api import MissingEntry

    try:
        submission = _submission(gradebook, assignment_id, student_id)
    except MissingEntry:
        gradebook.update_or_create_student(student_id)
        gradebook.update_or_create_submission(assignment_id, student_id)
        submission = _submission(gradebook, assignment_id, student_id)
    submission.timestamp = records["timestamp"]
    for notebook in submission.notebooks:
        saved = records["notebooks"].get(notebook.name)
        if saved is None:
            continue
        notebook.late_submission_penalty = saved["late_submission_penalty"]
        for grade in notebook.grades:
            auto = saved["grades"].get(grade.name)
            if auto is None:
                continue
            grade.auto_score = auto["auto_score"]
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        for comment in notebook.comments:
            auto = saved["comments"].get(comment.name)
            if auto is not None:
                comment.auto_comment = auto["auto_comment"]
    gradebook.db.commit()
