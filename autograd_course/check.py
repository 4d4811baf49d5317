"""`autograd-course check`: is the course sound? What CI runs on every change.

Static checks first (valid notebooks and nbgrader metadata, unique grade ids, the points total, nothing in
release/ that students must not see, no stored outputs), then release/ against a fresh `release`, then the
real test: the solutions, graded by the course's own grader, must earn every point, and the untouched release
notebooks must run without trouble and earn none.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbgrader.nbgraderformat import MetadataValidator, ValidationError

from .course import Course, CourseError


def forbidden_in_release(course: Course) -> dict[str, str]:
    """The delimiters (as nbgrader is configured) that must never reach a release notebook."""
    marks = course.delimiters
    return {
        marks.begin_solution: "solution code", marks.end_solution: "solution code",
        marks.begin_hidden: "hidden tests", marks.end_hidden: "hidden tests",
    }

COURSE_FILES = ("grader_config.py", "nbgrader_config.py", "source")


def check_course(course: Course) -> list[str]:
    problems: list[str] = []
    source = _load_all(course.source_dir, problems)
    release = _load_all(course.release_dir, problems)
    for name, nb in source.items():
        problems += _check_notebook(f"source/{name}", nb)
    for name, nb in release.items():
        problems += _check_notebook(f"release/{name}", nb)
        problems += _check_release_is_clean(course, f"release/{name}", nb, source.get(name))
    problems += _check_grade_ids(source)
    problems += _check_points(course, source)
    problems += _check_gradebook(course)
    if problems:
        return problems  # grading a course with broken notebooks would only repeat these problems
    with tempfile.TemporaryDirectory(prefix="autograd-course-check-") as scratch:
        scratch_course = _copy_course(course, Path(scratch) / "course")
        problems += _check_release_is_current(course, scratch_course)
        problems += _check_grading(scratch_course)
    return problems


def _load_all(folder: Path, problems: list[str]) -> dict[str, nbformat.NotebookNode]:
    notebooks = {}
    paths = sorted(folder.glob("*.ipynb"))
    if not paths:
        problems.append(f"{folder} holds no notebooks")
    for path in paths:
        try:
            notebooks[path.name] = nbformat.read(path, as_version=4)
        except Exception as error:  # noqa: BLE001 - any read failure is a problem to name
            problems.append(f"{path}: cannot be read as a notebook: {error}")
    return notebooks


def _check_notebook(label: str, nb) -> list[str]:
    problems = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        problems.append(f"{label}: invalid nbformat: {error.message}")
    try:
        MetadataValidator().validate_nb(nb)
    except ValidationError as error:
        problems.append(f"{label}: invalid nbgrader metadata: {error}")
    for cell in nb.cells:
        if cell.get("outputs") or cell.get("execution_count"):
            problems.append(f"{label}: cell {cell.get('id')} has stored outputs; clear them")
        meta = cell.metadata.get("nbgrader")
        if meta and meta.get("schema_version") != 3:
            problems.append(f"{label}: cell {cell.get('id')} has nbgrader schema {meta.get('schema_version')}, not 3")
    ids = [cell.get("id") for cell in nb.cells]
    if None in ids or len(set(ids)) != len(ids):
        problems.append(f"{label}: cell ids are missing or repeated")
    return problems


def _check_release_is_clean(course: Course, label: str, nb, source_nb) -> list[str]:
    problems = []
    for cell in nb.cells:
        for marker, what in forbidden_in_release(course).items():
            if marker in cell.source:
                problems.append(f"{label}: cell {cell.get('id')} contains {what} ({marker!r})")
    if source_nb is not None:
        answers = {
            cell.metadata["nbgrader"]["grade_id"]: cell.source
            for cell in source_nb.cells
            if cell.metadata.get("nbgrader", {}).get("solution")
        }
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id not in answers:
                continue
            region, given = _split_solution(answers[grade_id], course.delimiters)
            leaked = {line.strip() for line in region if line.strip()} - given
            leaked &= {line.strip() for line in cell.source.splitlines()}
            if leaked:
                problems.append(f"{label}: answer cell {cell.get('id')} contains solution code: {sorted(leaked)[0]!r}")
    return problems


def _split_solution(source: str, marks) -> tuple[list[str], set[str]]:
    """The lines of an answer cell's solution region, and the stripped lines given around it."""
    begin, end = re.escape(marks.begin_solution), re.escape(marks.end_solution)
    match = re.search(rf"^[^\n]*{begin}[^\n]*\n(.*?)^[^\n]*{end}[^\n]*$", source, re.DOTALL | re.MULTILINE)
    if not match:
        return [], set()
    outside = source[: match.start()] + source[match.end() :]
    return match.group(1).splitlines(), {line.strip() for line in outside.splitlines()}


def _check_grade_ids(source: dict) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for name, nb in source.items():
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id is None:
                continue
            if grade_id in seen:
                problems.append(f"grade_id {grade_id!r} is used twice (in {seen[grade_id]} and {name})")
            seen[grade_id] = name
    return problems


def _check_points(course: Course, source: dict) -> list[str]:
    total = sum(
        float(cell.metadata["nbgrader"].get("points", 0))
        for nb in source.values()
        for cell in nb.cells
        if cell.metadata.get("nbgrader", {}).get("grade")
    )
    expected = course.settings.total_points
    if total != expected:
        return [f"the test cells are worth {total:g} points in all; grader_config.py says {expected}"]
    return []


def _check_gradebook(course: Course) -> list[str]:
    """The gradebook grader_config.py names can be reached (its driver installed, its server answering). The
    check itself grades in a scratch gradebook, never in the course's."""
    from .results import check_gradebook

    try:
        check_gradebook(course)
    except CourseError as error:
        return [str(error)]
    return []


def _copy_course(course: Course, destination: Path) -> Course:
    """A scratch copy of the course with a gradebook of its own (a SQLite file in the copy, whatever
    `CourseDirectory.db_url` the course sets): the check's grading never writes in the course's gradebook."""
    destination.mkdir(parents=True)
    for name in COURSE_FILES:
        path = course.root / name
        if path.is_dir():
            shutil.copytree(path, destination / name)
        elif path.exists():
            shutil.copy2(path, destination / name)
    with open(destination / "grader_config.py", "a", encoding="utf-8") as config:
        config.write(f"\n# added by `autograd-course check`: a scratch gradebook\n"
                     f"c.CourseDirectory.db_url = {'sqlite:///' + str(destination / 'gradebook.db')!r}\n")
    return Course.at(destination)


def _check_release_is_current(course: Course, scratch: Course) -> list[str]:
    """Generate the release in the scratch copy (which then grades with it) and compare it with release/."""
    from .release import generate_release, stale_files

    return [
        f"release/{name} is not what `autograd-course release` generates from source/: run it"
        for name in stale_files(generate_release(scratch), course.release_dir)
    ]


def _check_grading(scratch: Course) -> list[str]:
    """Grade the solutions and the untouched release with the course's own grader."""
    from nbgrader.api import Gradebook

    from .catalog import solved, submission
    from .grading import grade
    from .release import write_canonical

    for student, build in (("solution", solved), ("untouched", submission)):
        folder = scratch.submitted_dir / student / scratch.assignment_id
        folder.mkdir(parents=True)
        for notebook_id in scratch.notebook_ids:
            write_canonical(folder / f"{notebook_id}.ipynb", build(scratch, notebook_id))
    try:
        rows = {row.student_id: row for row in grade(scratch, sandbox=shutil.which("bwrap") is not None, progress=None)}
    except CourseError as error:
        return [f"the course could not be graded: {error}"]
    problems = []
    with Gradebook(scratch.db_url, scratch.course_id) as gradebook:
        for notebook_id in scratch.notebook_ids:
            for student, want_full in (("solution", True), ("untouched", False)):
                graded = gradebook.find_submission_notebook(notebook_id, scratch.assignment_id, student)
                for part in graded.grades:
                    earned, worth = float(part.score), float(part.max_score)
                    if want_full and earned != worth:
                        why = _failure(scratch, student, notebook_id, part.name)
                        problems.append(
                            f"source/{notebook_id}.ipynb: the solution earns {earned:g}/{worth:g} on {part.name}: {why}"
                        )
                    if not want_full and earned != 0:
                        problems.append(
                            f"release/{notebook_id}.ipynb: the untouched notebook earns {earned:g} on {part.name}"
                        )
    for student in ("solution", "untouched"):
        if rows[student].status != "ok":
            problems.append(f"grading the {student} notebooks did not go cleanly: {rows[student].status} ({rows[student].notes})")
    return problems


def _failure(course: Course, student: str, notebook_id: str, part: str) -> str:
    nb = nbformat.read(course.autograded_dir / student / course.assignment_id / f"{notebook_id}.ipynb", 4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == part:
            errors = [f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.output_type == "error"]
            return "; ".join(errors) or "no error shown"
    return "the part is missing"
