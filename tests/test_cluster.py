"""Beyond one machine, as an instructor would check it: the gradebook in a real PostgreSQL server
(`CourseDirectory.db_url` in grader_config.py), and `autograd-course grade --scheduler` on a real Dask cluster.

One PostgreSQL server (postgres_helpers.py) and one cluster (cluster_helpers.py: `dask scheduler` and two
`dask worker` processes on loopback) serve the whole module. The demo class (`autograd-course demo`'s twelve
students) is graded locally into the SQLite default once; every other run must write the same grades.csv, byte for
byte: locally into PostgreSQL, on the cluster into SQLite, on the cluster while a worker is killed, and on the
cluster into PostgreSQL (read back by `report` and plain `nbgrader export`).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autograd_course.catalog import solved
from autograd_course.course import Course
from autograd_course.demo import CLASS, build_class

from cluster_helpers import LocalCluster, free_port, local_cluster
from course_helpers import NOTEBOOKS, copy_course, marks, submit
from postgres_helpers import PostgresServer, postgres_server

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
COMMAND = str(BIN / "autograd-course")
# A student whose grading takes its worker down is given up after this many more deaths (Dask's default is 3;
# fewer keeps the test short).
ALLOWED_FAILURES = 1


def run(course: Course, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMAND, *args], check=False, cwd=course.root, capture_output=True, text=True, timeout=timeout)


def graded(course: Course, *args: str) -> bytes:
    result = run(course, "grade", *args)
    assert result.returncode == 0, f"grade {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return course.grades_csv.read_bytes()


def demo_class(folder: Path, db_url: str | None = None) -> Course:
    course = copy_course(folder)
    if db_url is not None:
        use_gradebook(course, db_url)
    build_class(course)
    return course


def use_gradebook(course: Course, db_url: str) -> None:
    """As the README says: the gradebook's URL in grader_config.py."""
    with open(course.root / "grader_config.py", "a", encoding="utf-8") as config:
        config.write(f"\nc.CourseDirectory.db_url = {db_url!r}\n")


def rows(csv_bytes: bytes) -> dict[str, dict[str, str]]:
    return {row["student_id"]: row for row in csv.DictReader(io.StringIO(csv_bytes.decode(), newline=""))}


def outputs(course: Course) -> list[str]:
    return sorted(
        str(path.relative_to(course.root))
        for top in (course.autograded_dir, course.feedback_dir)
        for path in top.rglob("*") if path.is_file() and path.name != ".gitkeep"
    )


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    folder = tmp_path_factory.mktemp("cluster")
    with local_cluster(folder, workers=2, env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(ALLOWED_FAILURES)}) as running:
        yield running


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[Course, bytes]:
    """The demo class graded as today: locally, two jobs, the SQLite gradebook in the course root."""
    course = demo_class(tmp_path_factory.mktemp("local") / "course")
    return course, graded(course, "--jobs", "2")


# ------------------------------------------------------------------------------------------ PostgreSQL
def test_a_class_graded_locally_into_postgresql_gets_the_same_grades_csv(local, postgres, tmp_path):
    course = demo_class(tmp_path / "course", postgres.create_database())
    assert graded(course, "--jobs", "2") == local[1]
    assert not (course.root / "gradebook.db").exists(), "the gradebook went to SQLite, not to PostgreSQL"


def test_an_unreachable_gradebook_is_named_before_anything_is_graded(tmp_path):
    course = demo_class(tmp_path / "course", f"postgresql+psycopg://grader@127.0.0.1:{free_port()}/nowhere")
    result = run(course, "grade")
    assert result.returncode != 0
    assert "cannot reach the gradebook at postgresql+psycopg://grader@127.0.0.1" in result.stderr, result.stderr
    assert not course.grades_csv.exists() and outputs(course) == []


# ------------------------------------------------------------------------------------------ the cluster
def test_the_cluster_grades_the_demo_class_as_a_local_run_does(local, cluster, tmp_path):
    local_course, local_csv = local
    course = demo_class(tmp_path / "course")
    result = run(course, "grade", "--scheduler", cluster.address)
    assert result.returncode == 0, result.stderr + cluster.logs()
    assert course.grades_csv.read_bytes() == local_csv
    assert outputs(course) == outputs(local_course)
    assert (course.root / "reports" / "index.html").is_file()
    assert f"{len(CLASS)}/{len(CLASS)} students, 0 failed" in result.stderr  # the progress bar, as locally
    for student in CLASS:  # the feedback pages are the ones a local run writes
        for notebook_id in NOTEBOOKS:
            page = f"feedback/{student}/{course.assignment_id}/{notebook_id}.html"
            if (local_course.root / page).exists():
                assert (course.root / page).read_bytes() == (local_course.root / page).read_bytes(), page


def test_a_worker_killed_mid_run_costs_no_student(local, cluster, tmp_path):
    course = demo_class(tmp_path / "course")
    grading = subprocess.Popen(
        [COMMAND, "grade", "--scheduler", cluster.address], cwd=course.root, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    done_at_kill = -1
    deadline = time.monotonic() + 300
    while grading.poll() is None and time.monotonic() < deadline:
        done = len([path for path in course.autograded_dir.glob("*") if path.is_dir()])
        if done >= 2:
            done_at_kill = done
            cluster.kill_worker(cluster.workers[0])
            break
        time.sleep(0.2)
    _, stderr = grading.communicate(timeout=600)
    cluster.add_worker()  # the cluster as it was, for the tests after this one
    assert 2 <= done_at_kill < len(CLASS), "the worker was not killed mid-run"
    assert grading.returncode == 0, stderr + cluster.logs()
    assert course.grades_csv.read_bytes() == local[1]
    cluster.wait_for_workers(2)


def test_a_submission_that_kills_worker_after_worker_ends_in_error_for_that_student_alone(cluster, tmp_path):
    """What a submission that brings down every grading process it is given does (here the test kills the
    grading process whenever it grades `eve`): `eve` gets `error` once ALLOWED_FAILURES + 1 workers died under her,
    and the other students are graded as usual."""
    course = copy_course(tmp_path / "course")
    for student in ("ada", "eve", "finn"):
        submit(course, student, {notebook_id: solved(course, notebook_id) for notebook_id in NOTEBOOKS})
    stop = threading.Event()
    kills: list[int] = []

    def kill_eves_grading_process() -> None:
        while not stop.is_set():
            for pid in (entry for entry in os.listdir("/proc") if entry.isdigit()):
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if b"autograd_course.cluster" in command and Path(f"/proc/{pid}/cwd/.grading/submitted/eve").exists():
                        os.kill(int(pid), signal.SIGKILL)
                        kills.append(int(pid))
                except OSError:
                    continue
            time.sleep(0.05)

    killer = threading.Thread(target=kill_eves_grading_process, daemon=True)
    killer.start()
    try:
        result = run(course, "grade", "--scheduler", cluster.address)
    finally:
        stop.set()
        killer.join()
    assert result.returncode == 0, result.stderr + cluster.logs()
    graded_rows = rows(course.grades_csv.read_bytes())
    eve = graded_rows["eve"]
    assert (eve["score"], eve["status"]) == ("0", ";".join(f"error:{nb}" for nb in NOTEBOOKS)), eve
    assert "workers died while grading this student" in eve["notes"]
    for student in ("ada", "finn"):
        assert (graded_rows[student]["score"], graded_rows[student]["status"]) == (marks(), "ok"), graded_rows[student]
    assert len(set(kills)) == ALLOWED_FAILURES + 1
    cluster.wait_for_workers(2)


def test_postgresql_and_the_cluster_together(local, cluster, postgres, tmp_path):
    course = demo_class(tmp_path / "course", postgres.create_database())
    result = run(course, "grade", "--scheduler", cluster.address)
    assert result.returncode == 0, result.stderr + cluster.logs()
    assert course.grades_csv.read_bytes() == local[1]
    assert not (course.root / "gradebook.db").exists(), "the gradebook went to SQLite, not to PostgreSQL"
    # What the cluster run put in PostgreSQL is what `report` and plain nbgrader read back.
    course.grades_csv.unlink()
    reported = run(course, "report")
    assert reported.returncode == 0, reported.stderr
    assert course.grades_csv.read_bytes() == local[1]
    course.grades_csv.unlink()
    exported = subprocess.run(
        [str(BIN / "nbgrader"), "export"], check=False, cwd=course.root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert exported.returncode == 0, exported.stderr
    assert course.grades_csv.read_bytes() == local[1]


def test_an_unreachable_scheduler_is_said_clearly_and_nothing_is_lost(local, tmp_path):
    course = demo_class(tmp_path / "course")
    address = f"tcp://127.0.0.1:{free_port()}"
    result = run(course, "grade", "--scheduler", address, timeout=120)
    assert result.returncode != 0
    assert f"cannot reach the Dask scheduler at {address}" in result.stderr, result.stderr
    assert not course.grades_csv.exists() and outputs(course) == []
    assert sorted(path.name for path in course.submitted_dir.iterdir()) == sorted(CLASS)
