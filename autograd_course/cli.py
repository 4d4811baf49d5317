"""The `autograd-course` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from .course import Course, CourseError


def _release(args) -> int:
    from .release import generate_release

    course = Course.at(args.root)
    for path in generate_release(course):
        print(path.relative_to(course.root))
    return 0


def _grade(args) -> int:
    from .grading import GradingFailed, grade
    from .report import report_after_grading
    from .results import format_table

    course = Course.at(args.root)
    try:
        results = grade(
            course, jobs=args.jobs, timeout=args.timeout, student_glob=args.student, sandbox=not args.no_sandbox,
            scheduler=args.scheduler,
        )
    except GradingFailed as failure:
        print(format_table(course, failure.results))
        print(f"\nwrote {course.grades_csv}")
        print(f"autograd-course: {failure}", file=sys.stderr)
        return 1
    print(format_table(course, results))
    print(f"\nwrote {course.grades_csv}")
    for line in report_after_grading(course, results):
        print(line)
    return 0


def _report(args) -> int:
    from .report import write_report
    from .results import check_gradebook, write_grades

    course = Course.at(args.root)
    check_gradebook(course)
    results = write_grades(course)
    if results is not None:
        print(f"wrote {course.grades_csv} (from the gradebook: manual grades included)")
    page = write_report(course, results)
    print(f"wrote {page.parent}/ (open {page} in a browser)")
    return 0


def _check(args) -> int:
    from .check import check_course

    problems = check_course(Course.at(args.root))
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print("course OK")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(jobs=args.jobs, keep=args.keep, sandbox=not args.no_sandbox, root=args.root)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autograd-course",
        description="PyTorch autograd exercises (Questions 6-9) with a sandboxed, parallel nbgrader grader. "
        "Run the commands in the course root.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="say more (-v: what happens, -vv: details)")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_root(sub):
        sub.add_argument("--root", default=".", help="the course root (default: the current folder)")
        return sub

    with_root(commands.add_parser("release", help="regenerate release/ from source/")).set_defaults(func=_release)

    grade = with_root(commands.add_parser("grade", help="autograde every submission under submitted/"))
    grade.add_argument("--jobs", type=_positive_int, default=os.cpu_count(), help="students graded at once (default: all cores)")
    grade.add_argument("--timeout", type=_positive_float, default=None, help="seconds a cell may run (default: grader_config.py)")
    grade.add_argument("--student", default="*", metavar="GLOB", help="grade only the students whose id matches")
    grade.add_argument("--no-sandbox", action="store_true", help="run student code unsandboxed, as you (unsafe)")
    grade.add_argument(
        "--scheduler", metavar="ADDRESS", default=None,
        help="grade on the workers of this Dask scheduler (tcp://host:8786) instead of locally; --jobs is then not used",
    )
    grade.set_defaults(func=_grade)

    with_root(commands.add_parser("check", help="validate the course (what CI runs)")).set_defaults(func=_check)

    with_root(
        commands.add_parser(
            "report", help="rewrite grades.csv and reports/ from the gradebook (after manual grading, say)"
        )
    ).set_defaults(func=_report)

    demo = commands.add_parser("demo", help="grade a bundled demo class in a scratch copy of the course")
    demo.add_argument("--jobs", type=_positive_int, default=os.cpu_count())
    demo.add_argument("--keep", metavar="DIR", help="keep the graded demo course in DIR")
    demo.add_argument("--no-sandbox", action="store_true", help="run student code unsandboxed")
    demo.add_argument("--root", default=None, help="the course to copy (default: the current folder or this checkout)")
    demo.set_defaults(func=_demo)
    return parser


def _log_to_stderr(verbosity: int) -> None:
    """The grader's own messages (not nbgrader's, which keeps its log per student in logs/): warnings, and with
    -v what happens, with -vv the details."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("autograd-course: %(message)s"))
    logger = logging.getLogger("autograd_course")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))


def main(argv: list[str] | None = None) -> int:
    # A folder name that is not UTF-8 (a student id) must not stop the table from printing.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    _log_to_stderr(args.verbose)
    try:
        return args.func(args)
    except CourseError as error:
        print(f"autograd-course: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autograd-course: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
