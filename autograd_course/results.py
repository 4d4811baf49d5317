"""Each student's result, read back from nbgrader's gradebook, the autograded notebooks and the last grading run's
records, and grades.csv as ../shared/CONTRACT.md fixes it.

One row per folder under submitted/: the points of each notebook (nbgrader's late penalty taken off, as the
gradebook and `nbgrader export` do), the total, the maximum, the status (the outcomes' reasons, in the contract's
order) and notes (what happened, in words). `autograd-course grade`, `autograd-course report` and a plain
`nbgrader export` (through export.py) all write it with `write_grades_csv`. A `StudentResult` also keeps the points
of each graded part (test cell), for the class report's item analysis and scores.csv.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import outcomes
from .course import Course, CourseError
from .outcomes import Outcome, Reason

log = logging.getLogger(__name__)


@dataclass
class NotebookResult:
    score: float  # the gradebook's score, nbgrader's late penalty taken off
    outcomes: list[Outcome] = field(default_factory=list)
    parts: dict[str, float] = field(default_factory=dict)  # grade id -> points, as graded (before any late penalty)


@dataclass
class StudentResult:
    student_id: str
    notebooks: dict[str, NotebookResult]
    max_score: float
    notes_outside: list[str] = field(default_factory=list)  # what happened outside the notebooks (feedback)

    @property
    def score(self) -> float:
        return sum(result.score for result in self.notebooks.values())

    def earned(self, notebook_id: str, part: str) -> float:
        """The points of one graded part (0 for a notebook without a graded copy)."""
        result = self.notebooks.get(notebook_id)
        return result.parts.get(part, 0.0) if result is not None else 0.0

    @property
    def status(self) -> str:
        items = [
            f"{reason.value}:{notebook_id}"
            for reason in Reason
            for notebook_id, result in self.notebooks.items()
            if any(outcome.reason is reason for outcome in result.outcomes)
        ]
        return ";".join(items) or "ok"

    @property
    def notes(self) -> str:
        return " | ".join(
            [f"{notebook_id}: {outcome.describe()}" for notebook_id, result in self.notebooks.items() for outcome in result.outcomes]
            + self.notes_outside
        )


# ---------------------------------------------------------------------------------------- run records
@dataclass
class RunRecord:
    """What one `grade` run knew about a student that neither the gradebook nor the autograded notebooks hold: why
    nbgrader failed (its whole log is kept beside, in ``<student>.log``), notes such as a feedback fallback, and the
    outcomes intake recorded, for when no autograded notebook is left to hold them."""

    failure: str = ""
    notes: list[str] = field(default_factory=list)
    staged: dict[str, list[dict]] = field(default_factory=dict)  # notebook id -> outcomes as recorded

    @staticmethod
    def path(course: Course, student: str) -> Path:
        return course.run_logs_dir / f"{student}.json"

    def save(self, course: Course, student: str, nbgrader_log: str) -> None:
        folder = course.run_logs_dir
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{student}.log").write_text(nbgrader_log, encoding="utf-8", errors="backslashreplace")
        record = {"failure": self.failure, "notes": self.notes, "staged": self.staged}
        self.path(course, student).write_text(json.dumps(record, indent=1), encoding="utf-8", errors="backslashreplace")

    @classmethod
    def load(cls, course: Course, student: str) -> RunRecord:
        try:
            data = json.loads(cls.path(course, student).read_text(encoding="utf-8"))
            return cls(str(data.get("failure", "")), list(data.get("notes", [])), dict(data.get("staged", {})))
        except (OSError, ValueError):
            return cls()


# ------------------------------------------------------------------------------------------- reading
def find_students(course: Course) -> list[str]:
    """The class: every folder under submitted/ (nbgrader's submitted directory)."""
    if not course.submitted_dir.is_dir():
        raise CourseError(f"there is no {course.submitted_dir}: put submissions in submitted/<student>/{course.assignment_id}/")
    return sorted(entry.name for entry in course.submitted_dir.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def read_class(course: Course, students: list[str], gradebook) -> list[StudentResult]:
    """Every student's result, from an open nbgrader Gradebook."""
    from nbgrader.api import MissingEntry

    try:
        assignment = gradebook.find_assignment(course.assignment_id)
    except MissingEntry:
        raise CourseError(f"the gradebook has no assignment {course.assignment_id!r}: run `autograd-course grade` first") from None
    max_score = float(assignment.max_score)
    return [_read_student(course, student, gradebook, max_score) for student in students]


def _read_student(course: Course, student: str, gradebook, max_score: float) -> StudentResult:
    from nbgrader.api import MissingEntry

    record = RunRecord.load(course, student)
    try:
        submission = gradebook.find_submission(course.assignment_id, student)
    except (ValueError, MissingEntry):  # ValueError: an id the database cannot hold (not UTF-8)
        submission = None
    notebooks = {}
    for notebook_id in course.notebook_ids:
        path = course.autograded_dir / student / course.assignment_id / f"{notebook_id}.ipynb"
        result = NotebookResult(score=0.0)
        try:
            nb = nbformat.read(path, 4)
            result.outcomes = outcomes.recorded(nb)
            submitted = gradebook.find_submission_notebook(notebook_id, course.assignment_id, student)
            earned = float(submitted.score)
            penalty = float(submitted.late_submission_penalty or 0.0)
            result.score = max(0.0, earned - penalty)
            result.parts = {grade.name: float(grade.score or 0.0) for grade in submitted.grades}
            handed_in = not any(outcome.reason is Reason.MISSING for outcome in result.outcomes)
            if handed_in and submission is not None and submission.total_seconds_late > 0:
                result.outcomes.append(Outcome(Reason.LATE, late_note(submission, earned, penalty)))
        except (OSError, ValueError, KeyError, MissingEntry) as error:
            # No graded notebook: what intake found, and, unless it was not handed in at all, why there is none.
            result.outcomes = [Outcome.from_metadata(entry) for entry in record.staged.get(notebook_id, [])]
            if not any(outcome.reason is Reason.MISSING for outcome in result.outcomes):
                why = record.failure or f"no graded notebook ({type(error).__name__})"
                if record.failure:
                    why += f" (nbgrader's log: {course.run_logs_dir.relative_to(course.root) / student}.log)"
                result.outcomes.append(Outcome(Reason.ERROR, why))
        notebooks[notebook_id] = result
    return StudentResult(student, notebooks, max_score, list(record.notes))


def late_note(submission, earned: float, penalty: float) -> str:
    """How late a submission was and what it cost this notebook, in words."""
    due = submission.duedate
    extension = f", with an extension of {duration(submission.extension.total_seconds())}" if submission.extension else ""
    cost = f"late penalty {number(penalty)} of {number(earned)} points" if penalty > 0 else "no late penalty"
    return f"handed in {duration(submission.total_seconds_late)} after the due date ({due:%Y-%m-%d %H:%M} UTC{extension}); {cost}"


def duration(seconds: float) -> str:
    """``3 d 4 h 5 min``, ``2 h 0 min``, ``12 min 30 s``, ``45 s``."""
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def number(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------------------------------- writing
def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet will not run: text that starts like a formula (=, +, -, @, or a tab or carriage
    return before one) is quoted with a leading apostrophe, as OWASP recommends against CSV injection."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """A CSV file written whole or not at all; every text cell made spreadsheet-safe."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            for row in rows:
                writer.writerow([spreadsheet_safe(cell) if isinstance(cell, str) else cell for cell in row])
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_grades_csv(course: Course, results: list[StudentResult], path: Path | None = None) -> Path:
    header = ["student_id", *course.notebook_ids, "score", "max_score", "status", "notes"]
    rows = [
        [
            result.student_id,
            *(number(result.notebooks[notebook_id].score) for notebook_id in course.notebook_ids),
            number(result.score),
            number(result.max_score),
            result.status,
            result.notes,
        ]
        for result in results
    ]
    return write_csv(path or course.grades_csv, header, rows)


def format_table(course: Course, results: list[StudentResult]) -> str:
    short = {notebook_id: notebook_id.split("_")[0] for notebook_id in course.notebook_ids}
    header = ["student", *short.values(), "score", "status"]
    body = [
        [
            result.student_id,
            *(number(result.notebooks[notebook_id].score) for notebook_id in course.notebook_ids),
            f"{number(result.score)}/{number(result.max_score)}",
            result.status,
        ]
        for result in results
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def check_gradebook(course: Course) -> None:
    """Raise CourseError, saying why, when the gradebook at the course's `CourseDirectory.db_url` cannot be
    reached: a setting that is not a database URL, a driver that is not installed, a server that does not answer
    or refuses us. A SQLite gradebook is a file that nbgrader makes when it is first used: nothing to reach."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(course.db_url)
    except ArgumentError:
        raise CourseError(f"CourseDirectory.db_url (grader_config.py) is not a database URL: {course.db_url!r}") from None
    if url.get_backend_name() == "sqlite":
        return
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 10} if url.get_backend_name() == "postgresql" else {})
    except (NoSuchModuleError, ImportError) as error:
        hint = ""
        if url.drivername == "postgresql":
            hint = "; the PostgreSQL driver installed with this package is psycopg 3: write postgresql+psycopg://..."
        raise CourseError(f"no database driver for the gradebook at {shown} ({error}){hint}") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - the driver's own words say why
        lines = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise CourseError(
            f"cannot reach the gradebook at {shown} (CourseDirectory.db_url in grader_config.py): "
            f"{lines[0] if lines else type(error).__name__}"
        ) from None
    finally:
        engine.dispose()


def open_gradebook(course: Course):
    """nbgrader's Gradebook at the course's `CourseDirectory.db_url` (grader_config.py)."""
    from nbgrader.api import Gradebook

    return Gradebook(course.db_url, course.course_id)


def write_grades(course: Course) -> list[StudentResult] | None:
    """Rewrite grades.csv from the gradebook as it is now (after manual grading in the formgrader, say) without
    grading anything; None when there is no submitted/ to list the class from."""
    if course.db_url.startswith("sqlite:///") and not Path(course.db_url.removeprefix("sqlite:///")).is_file():
        raise CourseError(f"there is no gradebook at {course.db_url}: run `autograd-course grade` first")
    try:
        students = find_students(course)
    except CourseError:
        return None
    with open_gradebook(course) as gradebook:
        results = read_class(course, students, gradebook)
    write_grades_csv(course, results)
    return results
