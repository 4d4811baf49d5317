"""Wall time of grading one synthetic class with stock `nbgrader autograde` and with `autograd-course grade`.

    .venv/bin/python benchmarks/grade_speed.py [--students 24] [--jobs N]

Both graders get the same submissions (24 students x 4 notebooks by default: solutions, untouched release
notebooks and catalog mistakes, mixed), each in its own scratch copy of the course. Stock nbgrader runs with a
plain configuration (course id, stubs, timeout), one `nbgrader autograde` over the whole class, as an
instructor would run it. The benchmark checks that both give every student the same points per notebook, then
prints both wall times and their ratio. Nothing in the repository is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograd_course import catalog  # noqa: E402
from autograd_course.course import Course  # noqa: E402
from autograd_course.release import write_canonical  # noqa: E402

STOCK_CONFIG = """\
c = get_config()
c.CourseDirectory.course_id = "autograd-basics"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
c.Execute.timeout = 30
"""


def make_course(folder: Path, stock: bool) -> Course:
    folder.mkdir(parents=True)
    for name in ("source", "release"):
        shutil.copytree(REPO / name, folder / name)
    shutil.copy2(REPO / "grader_config.py", folder / "grader_config.py")
    if stock:
        (folder / "nbgrader_config.py").write_text(STOCK_CONFIG)
    else:
        shutil.copy2(REPO / "nbgrader_config.py", folder / "nbgrader_config.py")
    return Course.at(folder)


def build_class(course: Course, students: int) -> None:
    """Every third student is right throughout, one in six left everything blank, the rest carry mistakes."""
    mistakes = catalog.pack_into_students(catalog.MISTAKES, "s")
    plans = list(mistakes.values())
    for index in range(students):
        folder = course.submitted_dir / f"student{index + 1:02d}" / course.assignment_id
        folder.mkdir(parents=True)
        plan = plans[index % len(plans)]
        for notebook_id in course.notebook_ids:
            if index % 6 == 5:
                nb = catalog.submission(course, notebook_id)
            elif index % 3 == 0 or notebook_id not in plan:
                nb = catalog.solved(course, notebook_id)
            else:
                nb = plan[notebook_id].build(course)
            write_canonical(folder / f"{notebook_id}.ipynb", nb)


def scores(course: Course) -> dict[tuple[str, str], float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course.gradebook}") as gradebook:
        return {
            (notebook.student.id, notebook.name): float(notebook.score)
            for student in gradebook.students
            for notebook in gradebook.find_submission(course.assignment_id, student.id).notebooks
        }


def timed(command: list[str], cwd: Path) -> float:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def judge_cost(course: Course, rounds: int = 5) -> dict[str, float]:
    """Milliseconds per notebook spent by the new design itself: the judge sends each notebook of the class to a
    warm sandboxed judge, as nbgrader's execute step does, and the verdicts say where the time went."""
    import nbformat

    from autograd_course.judge.client import JudgeService

    plans = []
    for folder in sorted(course.submitted_dir.glob(f"*/{course.assignment_id}")):
        for notebook_id in course.notebook_ids:
            source = nbformat.read(course.source_dir / f"{notebook_id}.ipynb", 4)
            hidden = {
                cell.metadata["nbgrader"]["grade_id"]: cell.source
                for cell in source.cells if cell.metadata.get("nbgrader", {}).get("grade")
            }
            nb = nbformat.read(folder / f"{notebook_id}.ipynb", 4)
            cells = []
            for cell in nb.cells:
                if cell.cell_type != "code":
                    continue
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                is_test = grade_id in hidden
                source = hidden[grade_id] if is_test else cell.source
                cells.append({"index": len(cells), "name": grade_id or "added", "source": source, "is_test": is_test})
            plans.append({"cells": cells, "cell_timeout": 30.0, "budget": 300.0, "output_limit": 1_000_000, "memory_mb": 2048})
    service = JudgeService(sandboxed=shutil.which("bwrap") is not None)
    service.start()
    totals = {"round trip": 0.0}
    try:
        for _ in range(rounds):
            for plan in plans:
                started = time.perf_counter()
                verdict = service.judge(plan)
                totals["round trip"] += time.perf_counter() - started
                for part, seconds in verdict["seconds"].items():
                    totals[part] = totals.get(part, 0.0) + seconds
    finally:
        service.stop()
    return {part: 1000 * seconds / (rounds * len(plans)) for part, seconds in totals.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="grade-speed-") as scratch:
        stock = make_course(Path(scratch) / "stock", stock=True)
        ours = make_course(Path(scratch) / "ours", stock=False)
        for course in (stock, ours):
            build_class(course, args.students)
        # Setting up the gradebook is not part of grading: stock nbgrader needs it done first.
        timed([str(bin_dir / "nbgrader"), "generate_assignment", course.assignment_id, "--force"], stock.root)
        notebooks = args.students * len(stock.notebook_ids)
        print(f"class: {args.students} students x {len(stock.notebook_ids)} notebooks = {notebooks} notebooks")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        stock_seconds = timed([str(bin_dir / "nbgrader"), "autograde", stock.assignment_id], stock.root)
        print(f"stock nbgrader autograde:       {stock_seconds:7.1f} s  ({stock_seconds / notebooks:.2f} s per notebook)")
        ours_seconds = timed([str(bin_dir / "autograd-course"), "grade", "--jobs", str(args.jobs)], ours.root)
        print(
            f"autograd-course grade --jobs {args.jobs}: {ours_seconds:7.1f} s  ({ours_seconds / notebooks:.2f} s per notebook,"
            " feedback and grades.csv included)"
        )
        stock_scores, our_scores = scores(stock), scores(ours)
        disagreements = {
            key: (stock_scores.get(key), our_scores.get(key)) for key in stock_scores if stock_scores[key] != our_scores.get(key)
        }
        if disagreements or len(stock_scores) != len(our_scores):
            print(f"scores DISAGREE on {len(disagreements)} notebooks: {disagreements}")
            return 1
        print(f"scores agree on all {len(our_scores)} notebooks (total {sum(our_scores.values()):g} points)")
        print(f"speed-up: {stock_seconds / ours_seconds:.1f}x")
        cost = judge_cost(ours)
        print(
            f"the verdict's own cost per notebook: {cost.pop('round trip'):.1f} ms from plan to verdict ("
            + ", ".join(f"{part} {ms:.1f} ms" for part, ms in cost.items())
            + ")"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
