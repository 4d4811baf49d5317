"""`autograd-course grade`: every submission graded, in parallel and sandboxed, and every student accounted for.

The run: (1) bring the gradebook up to date with source/ and check release/ against it; (2) stage each
student's notebooks (intake.py); (3) autograde and write feedback with nbgrader, one student per task, in
``jobs`` worker processes that each keep a warm sandboxed runner; (4) write grades.csv from the gradebook and
the outcomes recorded in the autograded notebooks.
"""

from __future__ import annotations

import csv
import fcntl
import fnmatch
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import outcomes
from .course import Course, CourseError
from .intake import stage_as_error, stage_student

WORK_DIR = ".grading"  # inside the course root: nbgrader wants its folders there; removed after each run


@dataclass
class NotebookResult:
    score: float
    events: list[dict] = field(default_factory=list)


@dataclass
class StudentRow:
    student_id: str
    notebooks: dict[str, NotebookResult]
    max_score: float
    extra_notes: list[str] = field(default_factory=list)  # what happened outside the notebooks (feedback)

    @property
    def score(self) -> float:
        return sum(result.score for result in self.notebooks.values())

    @property
    def status(self) -> str:
        items = []
        for kind in outcomes.KINDS:
            for notebook_id, result in self.notebooks.items():
                if any(event["kind"] == kind for event in result.events):
                    items.append(f"{kind}:{notebook_id}")
        return ";".join(items) or "ok"

    @property
    def notes(self) -> str:
        return " | ".join(
            [
                f"{notebook_id}: {event.get('where') + ': ' if event.get('where') else ''}{event['detail']}"
                for notebook_id, result in self.notebooks.items()
                for event in result.events
            ]
            + self.extra_notes
        )


def _number(value: float) -> str:
    return f"{value:g}"


# ---------------------------------------------------------------------------------------------- run
@contextmanager
def _exclusive_work_dir(course: Course):
    work = course.root / WORK_DIR
    work.mkdir(exist_ok=True)
    with open(work / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CourseError(f"another grading run is using {course.root}; wait for it to finish") from None
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)


def prepare_gradebook(course: Course) -> None:
    """Load source/ into the gradebook (hidden tests included) and insist that release/ matches it."""
    from .release import generate_release, stale_files

    generated = generate_release(course, release_root=Path(WORK_DIR) / "release", gradebook=course.gradebook)
    stale = stale_files(generated, course.release_dir)
    if stale:
        raise CourseError(
            f"release/ does not match source/ ({', '.join(stale)}): "
            "run `autograd-course release` and commit the result before grading"
        )


def check_sandbox(course: Course) -> None:
    """Fail before any grading if the sandbox cannot start here."""
    import subprocess

    from .sandbox.bwrap import SandboxUnavailable, bwrap_command

    command = bwrap_command(["/usr/bin/true"], [course.root])
    probe = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap is installed but cannot create a sandbox here: {probe.stderr.strip()}. "
            "Pass --no-sandbox to grade without one, at your own risk."
        )


def find_students(course: Course) -> list[str]:
    if not course.submitted_dir.is_dir():
        raise CourseError(f"there is no {course.submitted_dir}: put submissions in submitted/<student>/{course.assignment_id}/")
    return sorted(entry.name for entry in course.submitted_dir.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def grade(
    course: Course,
    jobs: int | None = None,
    timeout: float | None = None,
    student_glob: str = "*",
    sandbox: bool = True,
    progress=sys.stderr,
) -> list[StudentRow]:
    jobs = max(1, jobs or os.cpu_count() or 1)
    if sandbox:
        check_sandbox(course)
    students = find_students(course)
    selected = [student for student in students if fnmatch.fnmatchcase(student, student_glob)]
    with _exclusive_work_dir(course) as work:
        prepare_gradebook(course)
        staging = work / "submitted"
        stage_submissions(course, selected, staging)
        overrides = {
            "CourseDirectory.submitted_directory": f"{WORK_DIR}/submitted",
            "SandboxedExecute.sandbox": sandbox,
        }
        if timeout is not None:
            overrides["SandboxedExecute.timeout"] = float(timeout)
        failures, notes = _grade_students(course, selected, overrides, jobs, progress)
    rows = collect_rows(course, students, failures, notes)
    write_grades_csv(course, rows)
    return rows


def stage_submissions(course: Course, students: list[str], staging: Path) -> None:
    """Stage each student's notebooks. A student whose folder cannot be staged at all is staged as the release
    with an `error` outcome saying why (graded, 0 points, a row in grades.csv); the others are not affected."""
    for student in students:
        try:
            stage_student(course, course.submitted_dir / student, staging)
        except Exception as error:  # noqa: BLE001 - one student's folder must not stop the class
            why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            stage_as_error(course, course.submitted_dir / student, staging, f"the submission could not be staged ({why})")


def _grade_students(course, students, overrides, jobs, progress) -> tuple[dict[str, str], dict[str, str]]:
    """Autograde and write feedback for each student; return the students whose run failed, with why, and the
    notes on students whose run went otherwise than planned (feedback pages with the scores only)."""
    failures: dict[str, str] = {}
    notes: dict[str, str] = {}
    if not students:
        return failures, notes
    bar = Progress(len(students), progress)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(students)), mp_context=context, initializer=_start_worker,
        initargs=(str(course.root), overrides),
    ) as pool:
        futures = {pool.submit(_grade_student, student): student for student in students}
        for future in as_completed(futures):
            student = futures[future]
            note = ""
            try:
                _, problem, note = future.result()
            except Exception as error:  # noqa: BLE001 - a worker that died costs one student, not the run
                problem = f"the grading worker failed: {error!r}"
            if problem:
                failures[student] = problem
            if note:
                notes[student] = note
            bar.advance(student, problem)
    bar.finish()
    return failures, notes


_worker_api = None
_worker_assignment = None
_worker_feedback_timeout = None


def quiet_nbgrader_warnings() -> None:
    """nbgrader 0.9.6 trips SQLAlchemy 2 autoflush warnings on every submission; they are not ours to act on."""
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)


def _start_worker(root: str, overrides: dict) -> None:
    global _worker_api, _worker_assignment, _worker_feedback_timeout
    from .feedback import FeedbackLimits, prepare_worker

    quiet_nbgrader_warnings()
    course = Course.at(root)
    _worker_api = course.nbgrader_api(overrides)
    _worker_assignment = course.assignment_id
    _worker_feedback_timeout = FeedbackLimits(config=course.nbgrader_config(overrides)).timeout
    prepare_worker(_worker_api, _worker_assignment)


def _grade_student(student: str) -> tuple[str, str, str]:
    """Autograde one student and write their feedback; return the student, what failed ('' if nothing) and a
    note for grades.csv ('' if none)."""
    from .feedback import student_feedback

    problems = []
    result = _worker_api.autograde(_worker_assignment, student, force=True, create=True)
    if not result["success"]:
        problems.append(f"autograde failed: {_last_line(result)}")
    # In a forked child killed past the time limit; the student gets pages with the scores only if it fails.
    note = student_feedback(_worker_api, _worker_assignment, student, _worker_feedback_timeout)
    if problems and note:  # a consequence of the failed autograde, reported with it
        problems.append(note)
        note = ""
    return student, "; ".join(problems), note


def _last_line(result: dict) -> str:
    text = (result.get("error") or result.get("log") or "").strip()
    return text.splitlines()[-1] if text else "no detail"


class Progress:
    """students done / total, and failures as they happen; redrawn in place on a terminal."""

    def __init__(self, total: int, stream) -> None:
        """``stream`` None draws nothing."""
        self.total, self.done, self.failed, self.stream = total, 0, 0, stream
        self.interactive = stream is not None and stream.isatty()
        self.started = time.monotonic()

    def advance(self, student: str, problem: str) -> None:
        self.done += 1
        if self.stream is None:
            return
        if problem:
            self.failed += 1
            self._clear()
            print(f"  {student}: {problem}", file=self.stream)
        self._draw()

    def _bar(self) -> str:
        width = 30
        filled = width * self.done // self.total
        seconds = time.monotonic() - self.started
        return (
            f"grading [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} students"
            f", {self.failed} failed, {seconds:.1f} s"
        )

    def _clear(self) -> None:
        if self.interactive:
            print("\r\033[K", end="", file=self.stream)

    def _draw(self) -> None:
        if self.interactive:
            print(f"\r{self._bar()}", end="", file=self.stream, flush=True)
        elif self.done == self.total or self.done % 10 == 0:
            print(self._bar(), file=self.stream, flush=True)

    def finish(self) -> None:
        if self.stream is not None and self.interactive:
            print(file=self.stream)


# ------------------------------------------------------------------------------------------- grades
def collect_rows(
    course: Course, students: list[str], failures: dict[str, str] | None = None, notes: dict[str, str] | None = None
) -> list[StudentRow]:
    """Each student's row: points from the gradebook (nbgrader's late penalty taken off, as `nbgrader export`
    does), outcomes from the autograded notebooks, and lateness from the gradebook's submission."""
    from nbgrader.api import Gradebook, MissingEntry

    failures = failures or {}
    notes = notes or {}
    rows = []
    with Gradebook(f"sqlite:///{course.gradebook}", course.config.CourseDirectory.get("course_id", "")) as gradebook:
        assignment = gradebook.find_assignment(course.assignment_id)
        max_score = float(assignment.max_score)
        for student in students:
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
                    result.events = outcomes.events_of(nb)
                    submitted = gradebook.find_submission_notebook(notebook_id, course.assignment_id, student)
                    earned = float(submitted.score)
                    penalty = float(submitted.late_submission_penalty or 0.0)
                    result.score = max(0.0, earned - penalty)
                    handed_in = not any(event["kind"] == "missing" for event in result.events)
                    if handed_in and submission is not None and submission.total_seconds_late > 0:
                        result.events.append({"kind": "late", "detail": late_note(submission, earned, penalty)})
                except (OSError, ValueError, MissingEntry) as error:
                    why = failures.get(student) or f"no graded notebook ({type(error).__name__})"
                    result.events.append({"kind": "error", "detail": why})
                notebooks[notebook_id] = result
            rows.append(StudentRow(student, notebooks, max_score, [notes[student]] if notes.get(student) else []))
    return rows


def late_note(submission, earned: float, penalty: float) -> str:
    """How late a submission was and what it cost this notebook, in words."""
    due = submission.duedate
    extension = f", with an extension of {duration(submission.extension.total_seconds())}" if submission.extension else ""
    cost = f"late penalty {_number(penalty)} of {_number(earned)} points" if penalty > 0 else "no late penalty"
    return f"handed in {duration(submission.total_seconds_late)} after the due date ({due:%Y-%m-%d %H:%M} UTC{extension}); {cost}"


def duration(seconds: float) -> str:
    """``3 d 4 h 5 min``, ``2 h 0 min``, ``12 min 30 s``, ``45 s``."""
    seconds = int(round(seconds))
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


def refresh_grades_csv(course: Course) -> list[StudentRow] | None:
    """Rewrite grades.csv from the gradebook as it is now (after manual grading in the formgrader, say) and the
    autograded notebooks, without grading anything; None when there is no submitted/ to list the class from."""
    from nbgrader.api import MissingEntry

    if not course.gradebook.is_file():
        raise CourseError(f"there is no {course.gradebook}: run `autograd-course grade` first")
    try:
        students = find_students(course)
    except CourseError:
        return None
    try:
        rows = collect_rows(course, students)
    except MissingEntry:
        raise CourseError(
            f"the gradebook has no assignment {course.assignment_id!r}: run `autograd-course grade` first"
        ) from None
    write_grades_csv(course, rows)
    return rows


def write_grades_csv(course: Course, rows: list[StudentRow]) -> Path:
    header = ["student_id", *course.notebook_ids, "score", "max_score", "status", "notes"]
    temporary = course.grades_csv.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(
                [
                    row.student_id,
                    *(_number(row.notebooks[notebook_id].score) for notebook_id in course.notebook_ids),
                    _number(row.score),
                    _number(row.max_score),
                    row.status,
                    row.notes,
                ]
            )
    temporary.replace(course.grades_csv)
    return course.grades_csv


def format_table(course: Course, rows: list[StudentRow]) -> str:
    short = {notebook_id: notebook_id.split("_")[0] for notebook_id in course.notebook_ids}
    header = ["student", *short.values(), "score", "status"]
    body = [
        [
            row.student_id,
            *(_number(row.notebooks[notebook_id].score) for notebook_id in course.notebook_ids),
            f"{_number(row.score)}/{_number(row.max_score)}",
            row.status,
        ]
        for row in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
