"""Put a submission's graded structure back the way the release had it, and record every change found.

nbgrader restores the source of read-only cells and the points of grade cells it can find, but a deleted test
cell is simply not graded, a moved one runs before the answer it checks, and a cell whose metadata was edited
can escape grading. This preprocessor, run in Autograde's sanitizing stage before nbgrader's own, rebuilds the
notebook in the release's order from the release's cells, keeping what is the student's: the answer cells and
any cells they added (after the cell they followed). nbgrader's OverwriteCells then puts the hidden tests back.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import nbformat
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor

from . import outcomes
from .outcomes import Outcome, Reason


def release_notebook_path(config, assignment_id: str, notebook_id: str) -> Path:
    coursedir = CourseDirectory(config=config)
    return Path(coursedir.format_path(coursedir.release_directory, ".", assignment_id)) / f"{notebook_id}.ipynb"


def _grade_id(cell) -> str | None:
    nbgrader = cell.get("metadata", {}).get("nbgrader")
    return nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None


def _is_answer(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def tampered(detail: str, where: str | None = None) -> Outcome:
    return Outcome(Reason.TAMPERED, detail, where)


def _describe(cell) -> str:
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("grade") and not meta.get("solution"):
        return "test cell"
    return "answer cell" if meta.get("solution") else "read-only cell"


class RestoreGradedCells(NbGraderPreprocessor):
    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        reference = nbformat.read(release_notebook_path(self.config, info["assignment"], info["notebook"]), 4)
        restore_structure(nb, reference)
        return nb, resources


def restore_structure(nb, reference) -> None:
    """Rebuild ``nb`` on the skeleton of ``reference`` (the release notebook), recording each repair."""
    expected = {grade_id: cell for cell in reference.cells if (grade_id := _grade_id(cell))}
    kept: dict[str, object] = {}
    order: list[str] = []
    added_after: dict[str | None, list] = defaultdict(list)
    previous = None
    for cell in nb.cells:
        name = _grade_id(cell)
        if name is not None and name in expected:
            if name in kept:
                if cell.cell_type == "code" and _describe(expected[name]) != "answer cell":
                    outcomes.record(nb, tampered(f"duplicate of {_describe(expected[name])} {name} removed", name))
                    continue
                # A copy of an answer cell is the student's code: it runs where they put it, ungraded.
                cell.metadata.pop("nbgrader", None)
                added_after[previous].append(cell)
                continue
            kept[name] = cell
            order.append(name)
            previous = name
        else:
            meta = cell.metadata.pop("nbgrader", None)
            if isinstance(meta, dict) and (meta.get("grade") or meta.get("solution") or meta.get("locked")):
                outcomes.record(nb, tampered("grading metadata on a cell not in the release was removed", name))
            cell.metadata.pop("deletable", None)
            cell.metadata.pop("editable", None)
            added_after[previous].append(cell)

    present_in_release_order = [name for name in expected if name in kept]
    if order != present_in_release_order:
        moved = [name for name, should in zip(order, present_in_release_order, strict=False) if name != should]
        outcomes.record(nb, tampered("cells were moved back into place: " + ", ".join(moved)))

    cells = list(added_after[None])
    for name, release_cell in expected.items():
        cell = kept.get(name)
        if cell is None:
            cell = copy.deepcopy(release_cell)
            what = _describe(release_cell)
            if release_cell.cell_type == "code":
                outcomes.record(nb, tampered(f"deleted {what} {name} was restored", name))
        else:
            _restore_cell(nb, cell, release_cell, name)
        cells.append(cell)
        cells.extend(added_after[name])
    nb.cells = cells


def _restore_cell(nb, cell, release_cell, name) -> None:
    what = _describe(release_cell)
    changed = []
    if cell.cell_type != release_cell.cell_type:
        changed.append(f"type {cell.cell_type} (was {release_cell.cell_type})")
        cell.cell_type = release_cell.cell_type
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            cell.pop("attachments", None)
    want = release_cell.metadata["nbgrader"]
    have = cell.metadata.get("nbgrader", {})
    for key in ("grade", "solution", "locked", "points", "task"):
        if have.get(key) != want.get(key):
            changed.append(f"{key} {have.get(key)!r} (was {want.get(key)!r})")
    cell.metadata["nbgrader"] = copy.deepcopy(want)
    for key in ("deletable", "editable"):
        if key in release_cell.metadata:
            cell.metadata[key] = release_cell.metadata[key]
    if what != "answer cell" and cell.source != release_cell.source:
        if release_cell.cell_type == "code":
            changed.append("source edited")
        cell.source = release_cell.source
    if changed and (release_cell.cell_type == "code" or what != "read-only cell"):
        outcomes.record(nb, tampered(f"{what} {name} restored: " + ", ".join(changed), name))
