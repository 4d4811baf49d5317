"""What limits grading on a Dask cluster: the coordinator's serial cost per student, a local run against a
two-worker loopback cluster, and what that means for 10,000 students.

    .venv/bin/python benchmarks/cluster_scale.py [--students 24] [--jobs N]

The same synthetic class (grade_speed.py's: solutions, untouched notebooks and catalog mistakes, mixed) is graded
twice, each time in its own scratch copy of the course: locally with --jobs N, then with --scheduler on a
`dask scheduler` and two `dask worker --nworkers 1 --nthreads 1` processes started here on 127.0.0.1. Both runs
must write the same grades.csv.

Workers add machines; the coordinator (the `grade` command) does not: for every student it stages the submission,
reads their gradebook rows, packs and submits the task, then unpacks the result, writes autograded/, feedback/ and
logs/, and writes the rows back into the gradebook, one student after another. The cluster run measures that
serial cost per student (cluster.CoordinatorTime), and the time a worker spends per student, and derives how many
worker cores one coordinator can keep busy. The serial pass at the end (grades.csv from the gradebook, as
`autograd-course report` does) is measured too. Nothing in the repository is written.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from grade_speed import build_class, make_course  # noqa: E402

from autograd_course import cluster, grading  # noqa: E402
from autograd_course.course import Course  # noqa: E402
from autograd_course.results import write_grades  # noqa: E402

from cluster_helpers import local_cluster  # noqa: E402

STUDENTS_TO_ESTIMATE = 10_000


def graded(course: Course, **options: object) -> float:
    started = time.perf_counter()
    grading.grade(course, progress=io.StringIO(), **options)  # type: ignore[arg-type]
    return time.perf_counter() - started


def final_pass(course: Course) -> float:
    """Seconds per student to write grades.csv from the gradebook (the serial end of every run)."""
    students = len([path for path in course.submitted_dir.iterdir() if path.is_dir()])
    started = time.perf_counter()
    write_grades(course)
    return (time.perf_counter() - started) / students


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cluster-scale-") as scratch:
        local = make_course(Path(scratch) / "local", stock=False)
        remote = make_course(Path(scratch) / "cluster", stock=False)
        for course in (local, remote):
            build_class(course, args.students)
        print(f"class: {args.students} students x {len(local.notebook_ids)} notebooks")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")

        local_seconds = graded(local, jobs=args.jobs)
        print(f"local, --jobs {args.jobs}:              {local_seconds:6.1f} s  ({local_seconds / args.students:.2f} s per student)")
        with local_cluster(Path(scratch) / "dask", workers=2) as running:
            cluster_seconds = graded(remote, scheduler=running.address)
        timing = cluster.last_run_time
        assert timing is not None
        print(
            f"two-worker loopback cluster:    {cluster_seconds:6.1f} s  ({cluster_seconds / args.students:.2f} s per "
            "student, workers' start included)"
        )
        same = local.grades_csv.read_bytes() == remote.grades_csv.read_bytes()
        print(f"grades.csv: {'identical' if same else 'DIFFERENT'}")
        print(timing.summary())

        n = max(timing.students, 1)
        coordinator = (timing.stage + timing.send + timing.receive + timing.write + timing.gradebook) / n
        worker = timing.worker_seconds / n
        final = final_pass(remote)
        print(f"final pass (grades.csv from the gradebook): {1000 * final:.1f} ms per student")
        cores = worker / coordinator
        print(
            f"one coordinator keeps at most {cores:.0f} worker cores busy ({worker:.2f} s of grading per student / "
            f"{1000 * coordinator:.1f} ms of coordinator time per student)"
        )
        print(f"estimate for {STUDENTS_TO_ESTIMATE:,} students (grading + final pass; scheduler and network not counted):")
        for machines, cores_each in ((1, 2), (4, 8), (16, 8), (64, 8)):
            grading_bound = worker / (machines * cores_each)
            per_student = max(grading_bound, coordinator)
            hours = STUDENTS_TO_ESTIMATE * (per_student + final) / 3600
            limit = "coordinator-bound" if coordinator >= grading_bound else "worker-bound"
            print(f"  {machines:3d} machines x {cores_each} cores: {hours:6.2f} h ({limit})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
