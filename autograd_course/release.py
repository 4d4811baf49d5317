"""`autograd-course release`: regenerate release/ from source/ with nbgrader."""

from __future__ import annotations

from pathlib import Path

import nbformat

from .course import Course, CourseError


def generate_release(course: Course, release_root: Path | None = None, gradebook: Path | None = None) -> list[Path]:
    """Run nbgrader's generate_assignment; return the release notebooks it wrote.

    ``release_root`` (relative to the course root) puts the notebooks somewhere other than release/, and
    ``gradebook`` records the assignment in that database instead of the course's.
    """
    overrides: dict[str, object] = {}
    if release_root is not None:
        overrides["CourseDirectory.release_directory"] = str(release_root)
    if gradebook is not None:
        overrides["CourseDirectory.db_url"] = f"sqlite:///{gradebook}"
    api = course.nbgrader_api(overrides)
    result = api.generate_assignment(course.assignment_id, force=True, create=True)
    if not result["success"]:
        raise CourseError(f"nbgrader generate_assignment failed:\n{result.get('error') or result.get('log')}")
    out_dir = course.root / (release_root or "release") / course.assignment_id
    written = sorted(out_dir.glob("*.ipynb"))
    for path in written:
        write_canonical(path, nbformat.read(path, as_version=4))
    return written


def write_canonical(path: Path, nb: nbformat.NotebookNode) -> None:
    """Write a notebook in the one byte layout the repository keeps: validated, sorted keys, LF, final newline."""
    nbformat.validate(nb)
    text = nbformat.writes(nb) + "\n"
    path.write_bytes(text.encode("utf-8"))
