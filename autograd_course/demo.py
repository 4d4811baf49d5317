"""`autograd-course demo`: grade a bundled class of twelve students in a scratch copy of the course.

The class is built from the catalog: some students are right throughout (one of them in other ways than the
solution), some make one or two of the classic mistakes or take a shortcut the hidden checks catch, one hands in
nothing, one a broken file, one forgets a notebook. Everything the grader writes
(grades.csv, autograded/, feedback/, reports/) stays in the scratch folder for you to look at.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from . import catalog
from .course import CONFIG_FILE, Course, CourseError
from .release import write_canonical

#: student -> the catalog variants in their notebooks (all other notebooks solved), or a special hand-in
CLASS = {
    "ada": [],
    "ben": "untouched",
    "chloe": ["q6 forgot requires_grad on x", "q9 copies made with copy.copy"],
    "dev": ["q7 swapped the roles of w[0] and w[1]", "q8 fix 2 with z.requires_grad_()"],
    "eli": ["q6a backward on the vector without a starting gradient", "q9a descent never resets"],
    "fay": ["q6 backward with retain_graph=True", "q7 x and w as nn.Parameter", "q9 reset with x.grad = None"],
    "gus": ["q8 caught it under the name detach_error", "q9 expects zeros after optimizer.zero_grad()"],
    "hana": ["q6 gradient written by hand instead of backward", "q7 gradients written by hand"],
    "ivan": ["q6 backward called twice", "missing q9_gradient_accumulation"],
    "jo": ["broken q6_basic_gradients", "q8 snapshot made with detach() alone"],
    "kai": ["q6b believes x.grad just stays None", "q6c guessed that nothing is tracked", "q7a gave w_a requires_grad"],
    "lea": ["q8 fix 1 still detaches", "q9 reset by making a new x", "q7b backward inside the function by hand"],
}


def find_course_root(root: str | None) -> Path:
    candidates = [Path(root)] if root else [Path.cwd(), Path(__file__).resolve().parent.parent]
    for candidate in candidates:
        if (candidate / CONFIG_FILE).is_file() and (candidate / "source").is_dir():
            return candidate.resolve()
    raise CourseError("cannot find the course (grader_config.py, source/, release/): run the demo from the course root")


def build_class(course: Course) -> None:
    for student, plan in CLASS.items():
        folder = course.submitted_dir / student / course.assignment_id
        folder.mkdir(parents=True)
        for notebook_id in course.notebook_ids:
            path = folder / f"{notebook_id}.ipynb"
            if plan == "untouched":
                write_canonical(path, catalog.submission(course, notebook_id))
            elif f"missing {notebook_id}" in plan:
                continue
            elif f"broken {notebook_id}" in plan:
                path.write_text('{"cells": [ "saved while the laptop died', encoding="utf-8")
            else:
                changes = {}
                for name in plan:
                    if name.split()[0] not in ("missing", "broken"):
                        variant = catalog.by_name(name)
                        if variant.notebook == notebook_id:
                            changes.update(variant.answers)
                write_canonical(path, catalog.solved(course, notebook_id, changes))


def run_demo(jobs: int | None = None, keep: str | None = None, sandbox: bool = True, root: str | None = None) -> int:
    from .grading import grade
    from .report import report_after_grading
    from .results import format_table

    source = find_course_root(root)
    target = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="autograd-course-demo-"))
    if target.exists() and any(target.iterdir()):
        raise CourseError(f"{target} is not empty; choose a new folder for --keep")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("grader_config.py", "nbgrader_config.py", "source", "release"):
        path = source / name
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, target / name)
    course = Course.at(target)
    build_class(course)
    print(f"Grading a demo class of {len(CLASS)} students in {target}")
    rows = grade(course, jobs=jobs, sandbox=sandbox)
    print()
    print(format_table(course, rows))
    print()
    for line in report_after_grading(course, rows):  # also writes reports/
        print(line)
    print(f"\nGrades: {course.grades_csv}\nFeedback: {course.feedback_dir}/<student>/autograd_basics/")
    return 0
