"""`autograd-course grade --scheduler ADDRESS`: the class graded on a Dask distributed cluster.

The coordinator (the `grade` command, grading.py) does what it does for a local run up to the grading itself:
it loads source/ into the course's gradebook and checks release/, then stages each student's submission
(intake.py). Instead of grading in local processes, it sends each student to the cluster as data and writes
what comes back. Workers share no filesystem with it and never touch the course's gradebook.

- **The kit**, sent once per worker (a Dask task whose result every worker fetches once, and recomputed from
  the scheduler's copy if every worker holding it is lost): grader_config.py, nbgrader_config.py, source/ and
  release/ of the assignment, the assignment's due date from the gradebook, and the run's settings (time limit,
  sandbox). A worker builds a private course folder from it, with a private SQLite gradebook made by nbgrader's
  generate_assignment from source/, and keeps both while kits with the same key keep coming.
- **A task** is one student: the staged files (the notebooks, timestamp.txt, submission_secret.txt) and the
  student's rows in the course's gradebook (gradebook_records.py). The worker grades exactly as a local worker
  does (grading._start_worker, grading._grade_student: nbgrader's autograde and feedback with the course's
  preprocessors, the sandboxed judge) and returns the autograded notebooks, the feedback pages, nbgrader's log
  and the student's new gradebook rows. The coordinator writes autograded/, feedback/, logs/ and the gradebook
  rows (through nbgrader's Gradebook API), then grades.csv and reports/ exactly as after a local run.
- **Each Dask worker process keeps one grading process**: a single-threaded child started afresh (never a
  fork of the multi-threaded Dask worker), that holds the private course, the nbgrader API and the warm judge
  with its sandbox, across tasks. Tasks in one worker process take turns (a lock): start workers with
  `--nthreads 1` and as many `--nworkers` as cores.
- **Nothing is lost.** A worker that dies (its machine, its process, or its grading process: a grading process
  that dies takes its worker down with it) has its students graded again elsewhere by Dask. A student whose
  grading was under way on `distributed.scheduler.allowed-failures` + 1 workers that died (3 + 1 by default) is
  given up by Dask (KilledWorker) and gets the status `error`, alone.

The cluster must be the instructor's own, on a network only they reach: Dask's own protocol sends pickled
functions. Our payloads (kit, task, result, and the calls between a worker and its grading process) are read
as plain data only (loads_plain): strings, bytes, numbers, containers and datetimes, so a worker's reply about
a student cannot run code in the coordinator, and it is written only into that student's outputs and rows.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import logging
import os
import pickle
import platform
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .course import CONFIG_FILE, Course, CourseError
from .release import replace_folder

if TYPE_CHECKING:
    from distributed import Client, Worker
    from nbgrader.api import Gradebook

    from .grading import Progress, StudentRun

log = logging.getLogger(__name__)

SCHEDULER_TIMEOUT = 10.0  # seconds to reach the scheduler before giving up
WORKER_TIMEOUT = 60.0  # seconds to wait for a first worker to join the scheduler
KIT_FILES = (CONFIG_FILE, "nbgrader_config.py")
IGNORED = (".ipynb_checkpoints", "*.pyc", "__pycache__")
DEATH_TOPIC = "autograd-course-grading-process-died"  # scheduler events: the task whose grading process died


def pack(value: object) -> bytes:
    return zlib.compress(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), 1)


def unpack(blob: bytes) -> Any:
    return loads_plain(zlib.decompress(blob))


# Every class a payload may name: the rest of a payload is builtin containers, strings, bytes and numbers.
_PLAIN_CLASSES = {("datetime", "datetime"), ("datetime", "timedelta"), ("datetime", "timezone"), (__name__, "Kit")}


class _PlainUnpickler(pickle.Unpickler):
    """Reads plain data only: a payload that names any other class or function is refused, so reading what a
    worker or a grading process sent cannot run code, whatever happened to them."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN_CLASSES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a payload named {module}.{name}, which is not plain data")


def loads_plain(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


# ------------------------------------------------------------------------------------ the grader itself
def grader_fingerprint() -> dict:
    """What decides a grade besides the course: this package's code, nbgrader, torch and Python. Every worker
    must have the coordinator's."""
    from .launch import PACKAGE_DIR

    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    versions = {}
    for package in ("nbgrader", "torch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {"code": digest.hexdigest()[:16], **versions, "python": platform.python_version()}


# ------------------------------------------------------------------------------------------- the kit
@dataclass
class Kit:
    """What a worker needs to grade this course's assignment, whatever the student."""

    key: str
    assignment_id: str
    files: dict[str, tuple[int, bytes]]  # path in the course root -> (mode, content)
    overrides: dict[str, object]  # nbgrader settings of this run (grading.grade's overrides)
    duedate: object  # the assignment's due date in the course's gradebook (naive UTC datetime), or None


def build_kit(course: Course, overrides: dict[str, object], duedate: datetime | None) -> bytes:
    files: dict[str, tuple[int, bytes]] = {}
    for name in KIT_FILES:
        path = course.root / name
        if path.is_file():
            files[name] = (path.stat().st_mode & 0o777, path.read_bytes())
    for folder in (course.source_dir, course.release_dir):
        try:
            relative = folder.relative_to(course.root)
        except ValueError:
            raise CourseError(f"{folder} is outside the course root: a cluster run sends the course root's files") from None
        for path in sorted(folder.rglob("*")):
            inside = path.relative_to(folder).parts
            if path.is_file() and not any(fnmatch(part, pattern) for part in inside for pattern in IGNORED):
                files[str(relative / path.relative_to(folder))] = (path.stat().st_mode & 0o777, path.read_bytes())
    digest = hashlib.sha256(pickle.dumps((sorted(files.items()), sorted(overrides.items()), str(duedate), grader_fingerprint())))
    return pack(Kit(digest.hexdigest()[:20], course.assignment_id, files, dict(overrides), duedate))


def load_kit(blob: bytes) -> Kit:
    """The kit as a Dask task: computed on one worker, fetched from there by the others."""
    return unpack(blob)


# ------------------------------------------------------------------------------------ the coordinator
@contextmanager
def connect(address: str) -> Iterator[Client]:
    """A Dask client on the scheduler at ``address``; CourseError when it cannot be reached quickly."""
    try:
        from distributed import Client
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise CourseError(f"grading on a cluster needs Dask's `distributed` package ({error})") from None
    try:
        client = Client(address, timeout=SCHEDULER_TIMEOUT, set_as_default=False)
    except Exception as error:  # noqa: BLE001 - whatever it was, the scheduler is not there for us
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CourseError(
            f"cannot reach the Dask scheduler at {address} (tried for {SCHEDULER_TIMEOUT:g} s: {why}). Is `dask "
            "scheduler` running there, and is the address right (tcp://host:8786)?"
        ) from None
    try:
        yield client
    finally:
        client.close()


def check_workers(client: Client, sandbox: bool) -> None:
    """Every worker present runs the coordinator's grader and (unless --no-sandbox) can make a sandbox."""
    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
    except TimeoutError:
        address = client.scheduler_info().get("address", "ADDRESS")
        raise CourseError(
            f"no worker joined the scheduler at {address} within {WORKER_TIMEOUT:g} s: start some "
            f"with `dask worker {address} --nthreads 1 --nworkers <cores>`"
        ) from None
    ours = grader_fingerprint()
    problems = []
    for address, probe in client.run(probe_worker, sandbox, on_error="return").items():
        if isinstance(probe, BaseException):
            problems.append(f"{address} cannot run the grader ({type(probe).__name__}: {probe}); install this package there")
        elif probe["fingerprint"] != ours:
            differ = ", ".join(
                f"{what} {probe['fingerprint'].get(what)} (here {ours[what]})"
                for what in ours if probe["fingerprint"].get(what) != ours[what]
            )
            problems.append(f"{address} runs another grader: {differ}; install the same version there")
        elif probe["sandbox"]:
            problems.append(f"{address} cannot make a sandbox: {probe['sandbox']}")
    if problems:
        raise CourseError("some workers cannot grade this course, so nothing was graded:\n  " + "\n  ".join(problems))
    for address, threads in sorted(client.nthreads().items()):
        if threads > 1:
            log.warning(
                "worker %s has %d threads, which take turns in one grading process: start workers with --nthreads 1 "
                "and --nworkers <cores>", address, threads,
            )


@dataclass
class CoordinatorTime:
    """Where the coordinator's own time went, in seconds: what it does per student cannot be spread out."""

    students: int = 0
    stage: float = 0.0  # intake: reading and staging the submission
    send: float = 0.0  # reading the staged files and the gradebook rows, packing, submitting
    receive: float = 0.0  # unpacking a result
    write: float = 0.0  # autograded/, feedback/, logs/
    gradebook: float = 0.0  # the student's rows in the course's gradebook
    worker_seconds: float = 0.0  # time the grading processes spent on these students, for comparison
    sizes: list = field(default_factory=lambda: [0, 0])  # bytes sent, bytes received

    def summary(self) -> str:
        n = max(self.students, 1)
        own = self.stage + self.send + self.receive + self.write + self.gradebook
        return (
            f"coordinator: {1000 * own / n:.1f} ms per student (stage {1000 * self.stage / n:.1f}, send "
            f"{1000 * self.send / n:.1f}, receive {1000 * self.receive / n:.1f}, write {1000 * self.write / n:.1f}, "
            f"gradebook {1000 * self.gradebook / n:.1f}); workers: {self.worker_seconds / n:.2f} s per student; "
            f"{self.sizes[0] / n / 1024:.0f} KiB sent and {self.sizes[1] / n / 1024:.0f} KiB received per student"
        )


#: the last cluster run's CoordinatorTime (benchmarks/ reads it)
last_run_time: CoordinatorTime | None = None


def grade_on_cluster(
    course: Course, client: Client, students: list[str], overrides: dict[str, object], staging: Path, bar: Progress
) -> list[StudentRun]:
    """Grade ``students`` on the cluster; write each one's outputs as their result arrives. Returns StudentRuns."""
    global last_run_time
    from distributed import KilledWorker, as_completed

    from . import gradebook_records, grading
    from .grading import StudentRun, keep_record, stage_submissions
    from .results import open_gradebook

    grading.quiet_nbgrader_warnings()
    timing = last_run_time = CoordinatorTime()
    runs = []
    with open_gradebook(course) as gradebook:
        duedate = gradebook.find_assignment(course.assignment_id).duedate
        gradebook.db.commit()
        kit_blob = build_kit(course, overrides, duedate)
        kit = client.submit(load_kit, kit_blob, key=f"autograd-course-kit-{hashlib.sha256(kit_blob).hexdigest()[:20]}")
        queue = iter(students)
        in_flight: dict = {}
        results = as_completed(loop=client.loop)
        run_id = os.urandom(4).hex()

        def submit(student: str, blob: bytes, key: str) -> None:
            future = client.submit(grade_task, kit, blob, key=key, pure=False)
            in_flight[future] = (student, blob)
            results.add(future)

        def send_next() -> bool:
            student = next(queue, None)
            if student is None:
                return False
            started = time.perf_counter()
            stage_submissions(course, [student], staging)
            staged = time.perf_counter()
            folder = staging / student / course.assignment_id
            files = {
                str(path.relative_to(folder)): path.read_bytes()
                for path in sorted(folder.rglob("*")) if path.is_file()
            }
            try:
                records = gradebook_records.read(gradebook, course.assignment_id, student)
            except Exception:  # noqa: BLE001 - graded as a student the gradebook does not know yet
                gradebook.db.rollback()
                records = None
            blob = pack({"student": os.fsencode(student), "files": files, "records": records})
            submit(student, blob, f"autograd-course-{run_id}-{timing.students}")
            timing.students += 1
            timing.stage += staged - started
            timing.send += time.perf_counter() - staged
            timing.sizes[0] += len(blob)
            return True

        # Enough tasks in flight to keep every worker thread busy while the next ones are prepared, and no more:
        # the scheduler does not hold the whole class's submissions at once.
        def window() -> int:
            return max(4, 2 * sum(client.nthreads().values()))

        limit = window()
        while len(in_flight) < limit and send_next():
            pass
        done = 0
        retried: set[str] = set()
        for future in results:
            student, blob = in_flight.pop(future)
            try:
                reply = future.result()
            except KilledWorker as error:
                if _innocent(client, future.key) and student not in retried:
                    # Dask blames every task a dead worker held; this one was waiting there while another student's
                    # grading died (or machines died under it): it is tried once more, under a key of its own.
                    retried.add(student)
                    future.release()
                    submit(student, blob, f"{future.key}-again")
                    continue
                last = getattr(error.last_worker, "address", error.last_worker)
                run = StudentRun(student, problem=(
                    f"{error.allowed_failures + 1} workers died while grading this student (the last: {last}), so "
                    "Dask gave up on it (KilledWorker; see the workers' logs)"
                ))
                _remove_outputs(course, student)
            except Exception as error:  # noqa: BLE001 - one student's task, not the run
                run = StudentRun(student, problem=f"the grading worker failed: {type(error).__name__}: {error}")
                _remove_outputs(course, student)
            else:
                try:
                    run = _take_result(course, gradebook, student, reply, timing)
                except Exception as error:  # noqa: BLE001 - a result that cannot be used costs its student only
                    gradebook.db.rollback()
                    run = StudentRun(student, problem=f"the worker's result could not be used: {type(error).__name__}: {error}")
                    _remove_outputs(course, student)
            future.release()
            keep_record(course, run, staging)
            shutil.rmtree(staging / student, ignore_errors=True)
            if run.problem:
                log.warning("%s: %s", student, run.problem)
            runs.append(run)
            bar.advance(student, run.problem)
            done += 1
            if done % 16 == 0:
                limit = window()
            while len(in_flight) < limit and send_next():
                pass
        client.cancel([kit])
    log.info("%s", timing.summary())
    return runs


def _innocent(client: Client, key: str) -> bool:
    """Whether no grading process was seen dying while it graded the task ``key`` (workers say so before they go,
    see _GradingHost.grade)."""
    try:
        events = client.get_events(DEATH_TOPIC)
    except Exception:  # noqa: BLE001 - not known: counted as not innocent, the student gets `error`
        return False
    return not any(isinstance(message, dict) and message.get("key") == key for _, message in events)


def _take_result(course: Course, gradebook: Gradebook, student: str, blob: bytes, timing: CoordinatorTime) -> StudentRun:
    from . import gradebook_records
    from .grading import StudentRun

    started = time.perf_counter()
    result = unpack(blob)
    received = time.perf_counter()
    # The student is the one this coordinator sent: nothing in the result names another.
    run = StudentRun(student, **{key: str(result["run"][key]) for key in ("problem", "note", "log")})
    _write_outputs(course, student, result)
    written = time.perf_counter()
    if result["records"] is not None:
        try:
            gradebook_records.write_autograded(gradebook, course.assignment_id, student, result["records"])
        except Exception as error:  # noqa: BLE001 - this student's rows only
            gradebook.db.rollback()
            run.problem = "; ".join(filter(None, [run.problem, f"the gradebook could not record the results ({error})"]))
    timing.receive += received - started
    timing.write += written - received
    timing.gradebook += time.perf_counter() - written
    timing.worker_seconds += result["seconds"]
    timing.sizes[1] += len(blob)
    return run


def _write_outputs(course: Course, student: str, result: dict) -> None:
    """autograded/<student>/<assignment>/ and feedback/<student>/<assignment>/ as the worker left them."""
    for top, files in ((course.autograded_dir, result["autograded"]), (course.feedback_dir, result["feedback"])):
        target = top / student / course.assignment_id
        if not files:
            shutil.rmtree(target, ignore_errors=True)
            continue
        fresh = target.with_name(f".{target.name}.new")
        shutil.rmtree(fresh, ignore_errors=True)
        for name, (mode, content) in files.items():
            path = fresh / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise CourseError(f"a worker returned a file outside the student's folder: {name!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            os.chmod(path, mode & 0o755)
        replace_folder(target, fresh)


def _remove_outputs(course: Course, student: str) -> None:
    """A student who could not be graded keeps no earlier results (as nbgrader does when autograde fails)."""
    for top in (course.autograded_dir, course.feedback_dir):
        target = top / student / course.assignment_id
        for folder in (target, target.with_name(f".{target.name}.new"), target.with_name(f".{target.name}.old")):
            shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- the Dask worker process
_lock = threading.Lock()
_host: _GradingHost | None = None


def probe_worker(sandbox: bool, dask_worker: Worker | None = None) -> dict[str, Any]:
    """Run on every worker before grading (Client.run passes ``dask_worker``): its grader, and whether it can make
    a sandbox."""
    problem = ""
    if sandbox:
        import subprocess

        from .sandbox.bwrap import SandboxUnavailable, bwrap_command

        try:
            base = _worker_base(dask_worker)
            base.mkdir(parents=True, exist_ok=True)
            probe = subprocess.run(bwrap_command(["/usr/bin/true"], [base]), check=False, capture_output=True, text=True, timeout=30)
            if probe.returncode != 0:
                problem = f"bubblewrap is installed but cannot create a sandbox here: {probe.stderr.strip()}"
        except SandboxUnavailable as error:
            problem = str(error)
    return {"fingerprint": grader_fingerprint(), "sandbox": problem}


def grade_task(kit: Kit, blob: bytes) -> bytes:
    """One student, in a Dask worker: graded in this worker process's grading process."""
    global _host
    with _lock:
        if _host is None or _host.key != kit.key:
            if _host is not None:
                _host.close()
                _host = None
            _host = _GradingHost(kit)
        return _host.grade(blob)


def _worker_base(worker: Worker | None = None) -> Path:
    """Where this worker keeps its private course: in the Dask worker's own folder (Dask removes it, also after a
    crash), else in a temporary folder."""
    try:
        from distributed import get_worker

        return Path((worker or get_worker()).local_directory) / "autograd-course"
    except (ImportError, ValueError):
        return Path(tempfile.gettempdir()) / f"autograd-course-worker-{os.getpid()}"


class GradingProcessDied(Exception):
    """The grading process ended (killed, crashed) while it was asked something."""


class _GradingProcess:
    """A single-threaded process of this package's own code (launch.py), started afresh (never forked from the
    multi-threaded Dask worker, whose processes may not have multiprocessing children either), that answers calls
    of the functions in ``_CALLS`` over a socket, one at a time. It ends when the socket closes."""

    def __init__(self, cwd: Path) -> None:
        import subprocess
        from multiprocessing.connection import Connection

        from .launch import python_command

        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                python_command("autograd_course.cluster", [str(theirs.fileno())]), cwd=cwd, stdin=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
            )
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())

    def call(self, name: str, *args: object) -> Any:
        try:
            self.connection.send_bytes(pickle.dumps((name, args), protocol=pickle.HIGHEST_PROTOCOL))
            ok, value = loads_plain(self.connection.recv_bytes())
        except (EOFError, OSError) as error:
            raise GradingProcessDied(f"the grading process ended ({type(error).__name__}; exit status "
                                     f"{self.process.poll()})") from None
        if not ok:
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        self.connection.close()  # the process ends when it reads the end of the socket
        try:
            self.process.wait(timeout=30)
        except Exception:  # noqa: BLE001 - busy or stuck: it goes anyway
            self.process.kill()
            self.process.wait()


class _GradingHost:
    """This Dask worker process's grading process and the private course it grades in."""

    def __init__(self, kit: Kit) -> None:
        self.key = kit.key
        self.failure = ""
        self.root = _worker_base() / f"course-{kit.key}"
        shutil.rmtree(self.root, ignore_errors=True)
        for name, (mode, content) in kit.files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            os.chmod(path, mode)
        # The private gradebook: whatever the course's is (PostgreSQL, say), the worker never touches it.
        private_db = "sqlite:///" + str(self.root / "gradebook.db")
        with open(self.root / CONFIG_FILE, "a", encoding="utf-8") as config:
            config.write(f"\n# added by a cluster worker: a private gradebook\nc.CourseDirectory.db_url = {private_db!r}\n")
        self.process = _GradingProcess(self.root)
        try:
            self.process.call("setup", str(self.root), kit.overrides, kit.duedate)
        except Exception as error:  # noqa: BLE001 - reported with every student sent here
            self.failure = str(error)
            log.error("this worker cannot grade: %s", self.failure)

    def grade(self, blob: bytes) -> bytes:
        if self.failure:
            raise RuntimeError(f"the worker could not set up the course: {self.failure}")
        try:
            return _run_in_grading_process(self.process, blob)
        except GradingProcessDied as error:
            # The grading process died under this student. It is part of this worker: the worker goes too, and
            # Dask grades its students elsewhere (and gives up on a student after allowed-failures such deaths).
            student = os.fsdecode(unpack(blob)["student"])
            log.error("%s while grading %r: this worker stops so that Dask moves its work elsewhere", error, student)
            _report_death()
            logging.shutdown()
            os._exit(70)

    def close(self) -> None:
        self.process.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _report_death() -> None:
    """Tell the scheduler which task's grading process died (the coordinator's _innocent reads it): Dask blames
    every task the dying worker holds, also those only waiting there."""
    try:
        from distributed import get_client, get_worker

        get_client(timeout=10).log_event(DEATH_TOPIC, {"key": str(get_worker().get_current_task())})
    except Exception as error:  # noqa: BLE001 - the worker goes anyway
        log.error("could not tell the scheduler which task was running: %s", error)


def _run_in_grading_process(process: _GradingProcess, blob: bytes) -> bytes:
    return process.call("grade", blob)


# ------------------------------------------------------------------------------- the grading process
_private: dict = {}


def main(args: list[str]) -> None:
    """The grading process: answer calls until the socket closes."""
    from multiprocessing.connection import Connection

    connection = Connection(int(args[0]))
    while True:
        try:
            name, call_args = loads_plain(connection.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            reply = (True, _CALLS[name](*call_args))
        except BaseException as error:  # noqa: BLE001 - told to the Dask worker, which reports it
            reply = (False, f"{type(error).__name__}: {error}")
        connection.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


def _setup_grading_process(root: str, overrides: dict[str, object], duedate: datetime | None) -> None:
    """In a worker's grading process, once: the private gradebook from the kit's source/, the due date, and the
    grading worker of a local run (grading._start_worker) with its judge and sandbox started."""
    from nbgrader.api import Gradebook

    from . import grading
    from .judge.client import judge_for_this_process

    grading.quiet_nbgrader_warnings()
    course = Course.at(root)
    grading.prepare_gradebook(course)
    with Gradebook(course.db_url, course.course_id) as gradebook:
        gradebook.update_or_create_assignment(course.assignment_id, duedate=duedate)
    grading._start_worker(root, overrides)
    judge_for_this_process(bool(overrides.get("SandboxedExecute.sandbox", True)), [course.root]).ensure_running()
    _private.update(course=course, overrides=overrides)


def _grade_in_grading_process(blob: bytes) -> bytes:
    """One student: their files and gradebook rows in, graded as locally, results out, nothing of them kept."""
    from nbgrader.api import Gradebook

    from . import gradebook_records, grading

    started = time.monotonic()
    task = unpack(blob)
    course: Course = _private["course"]
    student = os.fsdecode(task["student"])
    assignment = course.assignment_id
    submitted = course.root / grading.WORK_DIR / "submitted" / student
    folders = [submitted, course.autograded_dir / student, course.feedback_dir / student]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    for name, content in task["files"].items():
        path = submitted / assignment / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    with Gradebook(course.db_url, course.course_id) as gradebook:
        try:
            gradebook_records.restore(gradebook, assignment, student, task["records"])
        except Exception:  # noqa: BLE001 - an id SQLite cannot hold: nbgrader will say so as it grades
            gradebook.db.rollback()
    run = grading._grade_student(student)
    with Gradebook(course.db_url, course.course_id) as gradebook:
        try:
            records = gradebook_records.read(gradebook, assignment, student)
        except Exception:  # noqa: BLE001
            gradebook.db.rollback()
            records = None
        result = {
            "run": {"problem": run.problem, "note": run.note, "log": run.log},
            "autograded": _files_under(course.autograded_dir / student / assignment),
            "feedback": _files_under(course.feedback_dir / student / assignment),
            "records": records,
            "worker": socket.gethostname(),
            "seconds": time.monotonic() - started,
        }
        gradebook_records.forget(gradebook, assignment, student)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return pack(result)


def _files_under(folder: Path) -> dict[str, tuple[int, bytes]]:
    if not folder.is_dir():
        return {}
    return {
        str(path.relative_to(folder)): (path.stat().st_mode & 0o777, path.read_bytes())
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


_CALLS: dict[str, Callable[..., Any]] = {"setup": _setup_grading_process, "grade": _grade_in_grading_process}
