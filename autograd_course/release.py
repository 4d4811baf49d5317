"""`autograd-course release`: regenerate release/ from source/ with nbgrader."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat

from .course import Course, CourseError


def generate_release(course: Course, release_root: Path | None = None, db_url: str | None = None) -> list[Path]:
    """Run nbgrader's generate_assignment; return the release notebooks it wrote.

    ``release_root`` (relative to the course root) puts the notebooks somewhere other than release/, and
    ``db_url`` records the assignment in that database instead of the course's gradebook (`CourseDirectory.db_url`
    in grader_config.py). nbgrader writes into a staging folder first: the previous release is replaced only once
    the new one is complete.
    """
    check_sources(course)
    staging = Path(f".release-staging-{os.getpid()}")
    overrides: dict[str, object] = {"CourseDirectory.release_directory": str(staging)}
    if db_url is not None:
        overrides["CourseDirectory.db_url"] = db_url
    try:
        api = course.nbgrader_api(overrides)
        result = api.generate_assignment(course.assignment_id, force=True, create=True)
        if not result["success"]:
            raise CourseError(f"nbgrader could not generate the release: {_first_error(result)}")
        generated = course.root / staging / course.assignment_id
        for path in sorted(generated.glob("*.ipynb")):
            write_canonical(path, nbformat.read(path, as_version=4))
        target = course.root / (release_root or "release") / course.assignment_id
        replace_folder(target, generated)
    finally:
        shutil.rmtree(course.root / staging, ignore_errors=True)
    return sorted(target.glob("*.ipynb"))


def stale_files(generated: list[Path], release_dir: Path) -> list[str]:
    """Names of the notebooks in which a freshly generated release and ``release_dir`` differ (either side)."""
    fresh = {path.name: path.read_bytes() for path in generated}
    committed = {path.name: path.read_bytes() for path in release_dir.glob("*.ipynb")}
    return sorted(name for name in set(fresh) | set(committed) if fresh.get(name) != committed.get(name))


def check_sources(course: Course) -> None:
    """Name the source notebook nbgrader would choke on, before it does."""
    for path in course.source_dir.glob("*.ipynb"):
        try:
            nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as error:  # noqa: BLE001 - any reason the file is not a notebook
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CourseError(f"{path.relative_to(course.root)} is not a valid notebook: {first_line}") from None


def _first_error(result: dict) -> str:
    lines = (result.get("log") or "").splitlines() + (result.get("error") or "").splitlines()
    errors = [line.split("ERROR]", 1)[1].strip() for line in lines if "ERROR]" in line]
    return errors[0] if errors else (lines[-1].strip() if lines else "no detail")


def replace_folder(target: Path, new: Path) -> None:
    """Put ``new`` where ``target`` is, in two renames: ``target`` is never left half written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_canonical(path: Path, nb: nbformat.NotebookNode) -> None:
    """Write a notebook in the one byte layout the repository keeps: validated, sorted keys, LF, final newline."""
    nbformat.validate(nb)
    text = nbformat.writes(nb) + "\n"
    path.write_bytes(text.encode("utf-8"))
