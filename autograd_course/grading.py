"""`autograd-course grade`: every submission graded, in parallel and sandboxed, and every student accounted for.

The run: (1) bring the gradebook up to date with source/ and check release/ against it; (2) stage each
student's notebooks (intake.py); (3) autograde and write feedback with nbgrader, one student per task, in
``jobs`` worker processes that each keep a warm judge (judge/); (4) keep each student's nbgrader log and what the
run knew about them (results.RunRecord, in logs/); (5) write grades.csv from the gradebook, the autograded
notebooks and those records (results.py, the same code a plain `nbgrader export` runs, through export.py).

With a Dask scheduler (``scheduler``), steps (2) to (4) go student by student through cluster.py: each student is
staged here, graded by a worker exactly as in (3), and their results written here as they come back.
"""

from __future__ import annotations

import fcntl
import fnmatch
import logging
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import outcomes
from .course import Course, CourseError
from .intake import stage_as_error, stage_student
from .results import (
    RunRecord,
    StudentResult,
    check_gradebook,
    find_students,
    open_gradebook,
    read_class,
    write_grades_csv,
)

log = logging.getLogger(__name__)

WORK_DIR = ".grading"  # inside the course root: nbgrader wants its folders there; removed after each run


class GradingFailed(CourseError):
    """The grader itself failed for every student: grades.csv is written (``results``), but nothing was graded."""

    def __init__(self, message: str, results: list) -> None:
        super().__init__(message)
        self.results = results


@dataclass
class StudentRun:
    """One student's task, as a worker reports it."""

    student: str
    problem: str = ""  # what failed ('' if nothing)
    note: str = ""  # for grades.csv's notes ('' if none)
    log: str = ""  # nbgrader's log of the autograde


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

    generated = generate_release(course, release_root=Path(WORK_DIR) / "release")
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


def grade(
    course: Course,
    jobs: int | None = None,
    timeout: float | None = None,
    student_glob: str = "*",
    sandbox: bool = True,
    progress=sys.stderr,
    scheduler: str | None = None,
) -> list[StudentResult]:
    """Grade the selected students and write grades.csv for the whole class. Raises GradingFailed (after writing
    grades.csv) when nbgrader failed for every student graded.

    ``scheduler``: the address of a Dask scheduler whose workers grade the students (cluster.py); ``jobs`` is then
    not used (the cluster's worker threads are)."""
    jobs = max(1, jobs or os.cpu_count() or 1)
    if sandbox and scheduler is None:
        check_sandbox(course)
    check_gradebook(course)
    students = find_students(course)
    selected = [student for student in students if fnmatch.fnmatchcase(student, student_glob)]
    with ExitStack() as stack:
        client = None
        if scheduler is not None:
            from .cluster import check_workers, connect

            client = stack.enter_context(connect(scheduler))
            check_workers(client, sandbox)
            log.info("grading %d of %d students on the cluster at %s", len(selected), len(students), scheduler)
        else:
            log.info("grading %d of %d students with %d jobs", len(selected), len(students), jobs)
        with _exclusive_work_dir(course) as work:
            prepare_gradebook(course)
            staging = work / "submitted"
            overrides = {
                "CourseDirectory.submitted_directory": f"{WORK_DIR}/submitted",
                "SandboxedExecute.sandbox": sandbox,
            }
            if timeout is not None:
                overrides["SandboxedExecute.timeout"] = float(timeout)
            if client is None:
                stage_submissions(course, selected, staging)
                runs = _grade_students(course, selected, overrides, jobs, progress)
                for run in runs:
                    keep_record(course, run, staging)
            else:
                runs = _grade_on_cluster(course, client, selected, overrides, staging, progress)
    with open_gradebook(course) as gradebook:
        results = read_class(course, students, gradebook)
    write_grades_csv(course, results)
    failed = [run for run in runs if run.problem]
    if runs and len(failed) == len(runs):
        raise GradingFailed(
            f"the grader failed for every student graded ({len(runs)}); grades.csv records it. The first: "
            f"{failed[0].student}: {failed[0].problem} (nbgrader's log: {course.run_logs_dir / failed[0].student}.log)",
            results,
        )
    return results


def keep_record(course: Course, run: StudentRun, staging: Path) -> None:
    """What the run knew about a student, for grades.csv now and for a later `nbgrader export` or report."""
    staged = {}
    for notebook_id in course.notebook_ids:
        try:
            nb = nbformat.read(staging / run.student / course.assignment_id / f"{notebook_id}.ipynb", 4)
            staged[notebook_id] = [outcome.as_metadata() for outcome in outcomes.recorded(nb)]
        except (OSError, ValueError):
            staged[notebook_id] = []
    RunRecord(run.problem, [run.note] if run.note else [], staged).save(course, run.student, run.log)


def stage_submissions(course: Course, students: list[str], staging: Path) -> None:
    """Stage each student's notebooks. A student whose folder cannot be staged at all is staged as the release
    with an `error` outcome saying why (graded, 0 points, a row in grades.csv); the others are not affected."""
    for student in students:
        try:
            stage_student(course, course.submitted_dir / student, staging)
        except Exception as error:  # noqa: BLE001 - one student's folder must not stop the class
            why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            log.warning("%s could not be staged: %s", student, why)
            stage_as_error(course, course.submitted_dir / student, staging, f"the submission could not be staged ({why})")


def _grade_students(course, students, overrides, jobs, progress) -> list[StudentRun]:
    """Autograde and write feedback for each student, in worker processes."""
    runs: list[StudentRun] = []
    if not students:
        return runs
    bar = Progress(len(students), progress)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(students)), mp_context=context, initializer=_start_worker,
        initargs=(str(course.root), overrides),
    ) as pool:
        futures = {pool.submit(_grade_student, student): student for student in students}
        for future in as_completed(futures):
            student = futures[future]
            try:
                run = future.result()
            except Exception as error:  # noqa: BLE001 - a worker that died costs one student, not the run
                run = StudentRun(student, problem=f"the grading worker failed: {error!r}")
            if run.problem:
                log.warning("%s: %s", student, run.problem)
            runs.append(run)
            bar.advance(student, run.problem)
    bar.finish()
    return runs


def _grade_on_cluster(course, client, students, overrides, staging, progress) -> list[StudentRun]:
    """Stage, send, and write back each student through the Dask cluster (cluster.py), with the same progress."""
    from .cluster import grade_on_cluster

    if not students:
        return []
    bar = Progress(len(students), progress)
    runs = grade_on_cluster(course, client, students, overrides, staging, bar)
    bar.finish()
    return runs


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


def _grade_student(student: str) -> StudentRun:
    """Autograde one student and write their feedback."""
    from .feedback import student_feedback

    if _worker_api is None or _worker_assignment is None or _worker_feedback_timeout is None:
        raise RuntimeError("not a grading worker: _start_worker has not run in this process")
    problems = []
    result = _worker_api.autograde(_worker_assignment, student, force=True, create=True)
    if not result["success"]:
        problems.append(f"autograde failed: {_last_line(result)}")
    # In a forked child killed past the time limit; the student gets pages with the scores only if it fails.
    note = student_feedback(_worker_api, _worker_assignment, student, _worker_feedback_timeout)
    if problems and note:  # a consequence of the failed autograde, reported with it
        problems.append(note)
        note = ""
    return StudentRun(student, "; ".join(problems), note, str(result.get("log") or "") + str(result.get("error") or ""))


def _last_line(result: dict) -> str:
    """The error itself, not nbgrader's "Please see the above traceback": the last line that names one."""
    text = str(result.get("error") or result.get("log") or "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Please see the" not in line and "above traceback" not in line:
            return line[:500]
    return lines[-1][:500] if lines else "no detail"


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
