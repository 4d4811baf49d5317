"""Take a student's submission as it is and stage a gradable copy of each notebook, recording what was wrong.

The submitted files are only read. A notebook that is missing, unreadable or not a notebook is replaced in the
staging area by the untouched release notebook (so it is graded, earns 0 and gets gradebook rows), and the
reason is recorded in it. Only notebooks are staged: files a student adds (a torch.py, a gradebook.db, an
nbgrader_config.py) never reach the grader.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import nbformat
from nbformat.validator import normalize

from . import outcomes
from .course import Course
from .release import write_canonical

MAX_NOTEBOOK_BYTES = 20 * 2**20


class Unreadable(Exception):
    pass


def read_notebook(path: Path, student_dir: Path | None = None) -> tuple[nbformat.NotebookNode, list[str]]:
    """Parse a submitted file strictly; return the notebook and the repairs it needed, or raise Unreadable.

    A submission is read only from inside the student's own folder: a symbolic link (to the instructor's
    source notebook, say) is refused."""
    if student_dir is not None and not _really_inside(path, student_dir):
        raise Unreadable(f"{path.name} is a symbolic link or lies outside the student's folder")
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise Unreadable(f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise Unreadable(f"{path.name} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise Unreadable(f"{path.name} is not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or data.get("nbformat") != 4:
        raise Unreadable(f"{path.name} is not an nbformat 4 notebook")
    repairs = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            changes, data = normalize(data, strip_invalid_metadata=True)
        changes += _repair_cell_ids(data)
        if changes:
            repairs.append(f"{path.name} had {changes} invalid or missing field(s), repaired")
        nb = nbformat.from_dict(data)
        nbformat.validate(nb)
    except Exception as error:  # noqa: BLE001 - any schema failure makes the file ungradable
        raise Unreadable(f"{path.name} is not a valid notebook ({str(error).splitlines()[0][:200]})") from None
    return nb, repairs


def _really_inside(path: Path, folder: Path) -> bool:
    if path.is_symlink() or folder.is_symlink():
        return False
    return path.resolve().is_relative_to(folder.resolve()) and folder.resolve() == folder.absolute()


def _repair_cell_ids(data: dict) -> int:
    """nbformat 4.5 needs a unique id on every cell; give one to each cell that lost it or shares it."""
    if data.get("nbformat_minor", 0) < 5:
        return 0
    seen, repaired = set(), 0
    for index, cell in enumerate(data["cells"]):
        cell_id = cell.get("id") if isinstance(cell, dict) else None
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen:
            grade_id = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id") if isinstance(cell, dict) else None
            cell_id = str(grade_id) if grade_id and str(grade_id) not in seen else f"cell-{index}"
            while cell_id in seen:
                cell_id += "-x"
            if isinstance(cell, dict):
                cell["id"] = cell_id
            repaired += 1
        seen.add(cell_id)
    return repaired


def _answer_ids(nb) -> set[str]:
    return {
        cell.metadata["nbgrader"]["grade_id"]
        for cell in nb.cells
        if isinstance(cell.metadata.get("nbgrader"), dict) and cell.metadata["nbgrader"].get("solution")
    }


def _find_renamed(
    folder: Path, student_dir: Path, notebook_id: str, release: nbformat.NotebookNode, expected: set[Path]
) -> Path | None:
    """A notebook saved under another name still carries its answer cells' ids: find it by them."""
    wanted = _answer_ids(release)
    for candidate in sorted(folder.rglob("*.ipynb")) if folder.is_dir() else []:
        if candidate in expected or ".ipynb_checkpoints" in candidate.parts:
            continue
        try:
            nb, _ = read_notebook(candidate, student_dir)
        except (Unreadable, OSError):
            continue
        if wanted and wanted <= _answer_ids(nb):
            return candidate
    return None


def stage_student(course: Course, student_dir: Path, staging_root: Path) -> None:
    """Write ``staging_root/<student>/<assignment>/<notebook>.ipynb`` for every notebook of the course."""
    assignment_dir = student_dir / course.assignment_id
    out_dir = staging_root / student_dir.name / course.assignment_id
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    timestamp = assignment_dir / "timestamp.txt"  # written by `nbgrader collect`; late penalties read it
    if timestamp.is_file() and _really_inside(timestamp, student_dir) and timestamp.stat().st_size < 1024:
        shutil.copyfile(timestamp, out_dir / "timestamp.txt")
    expected_paths = {assignment_dir / f"{notebook_id}.ipynb" for notebook_id in course.notebook_ids}
    for notebook_id in course.notebook_ids:
        release = nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4)
        path = assignment_dir / f"{notebook_id}.ipynb"
        nb, kind, detail = None, None, None
        if not path.is_file():
            renamed = _find_renamed(assignment_dir, student_dir, notebook_id, release, expected_paths)
            if renamed is None:
                kind, detail = "missing", f"no {path.name} in the submission"
            else:
                path = renamed
                kind, detail = "invalid", f"graded from {renamed.relative_to(student_dir)}, which should be {notebook_id}.ipynb"
        if path.is_file():
            try:
                nb, repairs = read_notebook(path, student_dir)
                if repairs and kind is None:
                    kind, detail = "invalid", "; ".join(repairs)
            except (Unreadable, OSError) as error:
                kind, detail = "invalid", f"{error}; graded as if left blank"
        if nb is None:
            nb = release
        outcomes.reset_events(nb)
        if kind:
            outcomes.add_event(nb, kind, detail)
        write_canonical(out_dir / f"{notebook_id}.ipynb", nb)
