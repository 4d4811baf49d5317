"""What feedback pages cost: one student-added markdown cell of pathological content, and a whole class.

    .venv/bin/python benchmarks/feedback_speed.py render [--sizes 16 32 64 128] [--give-up 60]
    .venv/bin/python benchmarks/feedback_speed.py class [--students 16] [--jobs 2] [--runs 3]

``render`` times nbgrader's own ``generate_feedback`` (the course's grader_config.py: its preprocessors, the
feedback template) for one notebook, Q6 solved, with one markdown cell added by the student holding
``size`` KB of one pathological pattern. Each render runs in a forked process that is killed after
``--give-up`` seconds; a payload whose render is killed is not tried at larger sizes.

``class`` times ``autograd-course grade`` on a synthetic class (right, wrong and blank notebooks mixed, as in
grade_speed.py): wall time, and the CPU time of all its processes (steadier on a shared machine). Then the
cost of rendering one student's feedback in a forked, time-limited child compared with rendering it in the
worker itself. Nothing in the repository is written.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402
from grade_speed import build_class  # noqa: E402 - the same synthetic class

from autograd_course.course import Course  # noqa: E402

NOTEBOOK = "q6_basic_gradients"

#: name -> a function of the size in bytes giving the markdown a student adds
PAYLOADS = {
    "brackets": lambda n: "[" * n,
    "links_to_files": lambda n: ("[a](/files/" * (n // 11 + 1))[:n],
    "open_links": lambda n: ("[a](" * (n // 4 + 1))[:n],
    "images": lambda n: ("![" * (n // 2 + 1))[:n],
    "emphasis": lambda n: ("*_" * (n // 2 + 1))[:n],
    "backticks": lambda n: ("`a" * (n // 2 + 1))[:n],
    "angle_brackets": lambda n: ("<a" * (n // 2 + 1))[:n],
    "nested_quotes": lambda n: "\n".join("> " * (i % 200 + 1) + "a" for i in range(n // 100 + 1))[:n],
    "nested_lists": lambda n: "\n".join("  " * (i % 100) + "- a" for i in range(n // 50 + 1))[:n],
    "reference_links": lambda n: (
        "\n".join(f"[r{i}]: /u{i}" for i in range(n // 24 + 1)) + "\n" + "[r0]" * (n // 8)
    )[:n],
    "math": lambda n: ("$a" * (n // 2 + 1))[:n],
}


def scratch_course(folder: Path) -> Course:
    folder.mkdir(parents=True)
    for name in ("source", "release"):
        shutil.copytree(REPO / name, folder / name)
    for name in ("grader_config.py", "nbgrader_config.py"):
        shutil.copy2(REPO / name, folder / name)
    return Course.at(folder)


def prepared_course(folder: Path) -> Course:
    """A course whose gradebook knows the assignment, as after the first steps of `autograd-course grade`."""
    from autograd_course.grading import prepare_gradebook, quiet_nbgrader_warnings

    quiet_nbgrader_warnings()
    course = scratch_course(folder)
    prepare_gradebook(course)
    return course


def autograded_with_markdown(course: Course, student: str, markdown: str) -> None:
    """Put an autograded Q6 for ``student`` in place, solved, with ``markdown`` added after the first answer."""
    from nbgrader.api import Gradebook

    nb = nbformat.read(course.source_dir / f"{NOTEBOOK}.ipynb", 4)  # solutions and hidden tests, as autograded
    answer = next(i for i, cell in enumerate(nb.cells) if cell.metadata.get("nbgrader", {}).get("solution"))
    nb.cells.insert(answer + 1, nbformat.v4.new_markdown_cell(markdown))
    folder = course.autograded_dir / student / course.assignment_id
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{NOTEBOOK}.ipynb")
    with Gradebook(f"sqlite:///{course.gradebook}") as gradebook:
        gradebook.update_or_create_student(student)
        gradebook.add_submission(course.assignment_id, student)


def forked(function, seconds: float):
    """Run ``function`` in a forked child; its wall time, or None when it was killed after ``seconds``."""
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            function()
        finally:
            os._exit(0)
    deadline = started + seconds
    while time.perf_counter() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return time.perf_counter() - started
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def render(args) -> int:
    with tempfile.TemporaryDirectory(prefix="feedback-speed-") as scratch:
        course = prepared_course(Path(scratch) / "course")
        api = course.nbgrader_api()
        payloads = args.payloads or list(PAYLOADS)
        print(f"seconds to render the feedback of one notebook with one added markdown cell (killed after {args.give_up:g} s)")
        print(f"{'payload':16}" + "".join(f"{size:>9} KB" for size in args.sizes))
        for name in payloads:
            cells = []
            for size in args.sizes:
                student = f"{name}_{size}"
                autograded_with_markdown(course, student, PAYLOADS[name](size * 1024))
                seconds = forked(lambda: api.generate_feedback(course.assignment_id, student, force=True), args.give_up)  # noqa: B023 - called at once
                page = course.feedback_dir / student / course.assignment_id / f"{NOTEBOOK}.html"
                if seconds is None:
                    cells.append(f"{'> ' + format(args.give_up, 'g'):>12}")
                    break
                cells.append(f"{seconds:12.2f}" if page.exists() else f"{'failed':>12}")
            print(f"{name:16}" + "".join(cells), flush=True)
    return 0


def whole_class(args) -> int:
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="feedback-speed-") as scratch:
        course = scratch_course(Path(scratch) / "course")
        build_class(course, args.students)
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        times, cpu = [], []
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(
                [str(bin_dir / "autograd-course"), "grade", "--jobs", str(args.jobs)], cwd=course.root, env=env,
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        print(f"autograd-course grade, {args.students} students, --jobs {args.jobs}: wall "
              + ", ".join(f"{seconds:.1f} s" for seconds in times) + f" (best {min(times):.1f} s); CPU (all processes) "
              + ", ".join(f"{seconds:.1f} s" for seconds in cpu) + f" (best {min(cpu):.1f} s)")
        fork_overhead(course, args.students, args.runs)
    return 0


def fork_overhead(course: Course, students: int, runs: int) -> None:
    """Each student's feedback rendered as a grading worker did before (in the worker itself, warm) and as it
    does now (in a forked child, time-limited), interleaved; medians per student."""
    try:
        from autograd_course.feedback import generate_with_time_limit, prepare_worker, run_with_time_limit
    except ImportError:
        print("(no time-limited feedback in this version)")
        return
    from autograd_course.grading import quiet_nbgrader_warnings

    quiet_nbgrader_warnings()
    api = course.nbgrader_api()
    prepare_worker(api, course.assignment_id)
    ids = sorted(path.name for path in course.autograded_dir.iterdir())[:students]
    api.generate_feedback(course.assignment_id, ids[0], force=True)  # warm, as a worker after its first student
    plain, limited = [], []
    for _ in range(runs):
        for student in ids:
            started = time.perf_counter()
            assert api.generate_feedback(course.assignment_id, student, force=True)["success"]
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert generate_with_time_limit(api, course.assignment_id, student, 60)["success"]
            limited.append(time.perf_counter() - started)
    plain_ms, limited_ms = statistics.median(plain) * 1000, statistics.median(limited) * 1000
    print(f"one student's feedback (4 notebooks), median of {len(plain)}: {plain_ms:.0f} ms in the worker, "
          f"{limited_ms:.0f} ms in a forked, time-limited child ({limited_ms - plain_ms:+.0f} ms per student)")
    started = time.perf_counter()
    for _ in range(50):
        run_with_time_limit(lambda: {"success": True}, 60)
    print(f"fork, run nothing, collect the result: {(time.perf_counter() - started) / 50 * 1000:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("render")
    one.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    one.add_argument("--payloads", nargs="+", choices=sorted(PAYLOADS))
    one.add_argument("--give-up", type=float, default=60)
    one.set_defaults(func=render)
    many = commands.add_parser("class")
    many.add_argument("--students", type=int, default=16)
    many.add_argument("--jobs", type=int, default=os.cpu_count())
    many.add_argument("--runs", type=int, default=3)
    many.set_defaults(func=whole_class)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
