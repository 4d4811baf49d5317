"""nbgrader's Execute step, replaced: a notebook's student code runs in a sandboxed kernel, and its checks run in
the judge, a process where no student code ever runs (judge/).

Configured in grader_config.py as the first of `Autograde.autograde_preprocessors`, so `autograd-course grade`
and a plain `nbgrader autograde` in the course root both grade this way.

`SandboxCheckingExporter` (`Autograde.exporter_class` in grader_config.py) starts this process's judge before
nbgrader touches anything: nbgrader's converter removes a student's earlier results when it starts on the student
(with --force, as the formgrader's Autograde button does) and again when grading fails, so a sandbox that cannot
start must stop the run before that, with the results left as they were.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbgrader import utils
from nbgrader.converters.base import NbGraderException
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, Execute
from traitlets import Bool, Float, Integer
from traitlets.utils.importstring import import_item

from . import outcomes
from .integrity import release_notebook_path
from .judge.client import JudgeFailed, JudgeService, judge_for_this_process
from .outcomes import Outcome, Reason
from .sandbox.bwrap import SandboxUnavailable

NOT_RUN = {
    "output_type": "error",
    "ename": "NotExecuted",
    "evalue": "this cell was not run",
    "traceback": ["NotExecuted: this cell was not run, so it earns no points"],
}


class SandboxedExecute(Execute):
    # nbgrader's Execute takes whole seconds; the judge keeps time itself, so fractions are fine here.
    timeout = Float(30.0, help="Seconds one cell (or one check) may run before it is stopped.").tag(config=True)
    sandbox = Bool(
        True,
        help="Run student code in the bubblewrap sandbox. False runs it as you, with your files in reach: only "
        "for code you trust.",
    ).tag(config=True)
    memory_limit_mb = Integer(2048, help="Memory a notebook's code may allocate, in MiB.").tag(config=True)
    output_limit = Integer(
        1_000_000,
        help="Characters of output (streams, results, errors, tracebacks, warnings) kept per notebook; the rest is "
        "cut and the notebook gets the status resource_limit.",
    ).tag(config=True)
    notebook_timeout = Float(
        0.0,
        help="Seconds a whole notebook may run. 0: the per-cell limit times the number of code cells in the "
        "release notebook, however many cells the submission has.",
    ).tag(config=True)
    value_limit_mb = Integer(32, help="MiB of the student's objects one check may read.").tag(config=True)

    def preprocess(self, nb, resources):
        code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        hidden = ClearHiddenTests(config=self.config)
        plan = {
            "cells": [
                {
                    "index": index, "name": _cell_name(cell), "source": cell.source, "is_test": _is_test(cell),
                    "hidden_lines": _hidden_lines(cell.source, hidden) if _is_test(cell) else [],
                }
                for index, cell in enumerate(code_cells)
            ],
            "cell_timeout": float(self.timeout),
            "budget": self._budget(resources),
            "output_limit": self.output_limit,
            "memory_mb": self.memory_limit_mb,
            "value_limit": self.value_limit_mb * 2**20,
        }
        try:
            verdict = self._judge().judge(plan)
            results, events = verdict["cells"], verdict["events"]
        except JudgeFailed as error:
            self.log.error("Could not grade %s: %s", resources.get("unique_key"), error)
            results = {}
            events = [{"kind": "error", "cell": None, "detail": f"the grader could not run this notebook: {error}"}]
        for index, cell in enumerate(code_cells):
            result = results.get(str(index))
            if result is None:
                cell.outputs = [nbformat.from_dict(NOT_RUN)]
                cell.execution_count = None
            else:
                cell.outputs = [nbformat.from_dict(output) for output in result["outputs"]]
                cell.execution_count = result["execution_count"]
        for event in events:
            where = code_cells[event["cell"]] if event.get("cell") is not None else None
            outcomes.record(nb, Outcome(Reason(event["kind"]), event["detail"], _cell_name(where) if where is not None else None))
        return nb, resources

    def _judge(self) -> JudgeService:
        """The judge the exporter started (see SandboxCheckingExporter), else this process's own."""
        judge = getattr(self.parent, "judge", None)
        if isinstance(judge, JudgeService):
            return judge
        return judge_for_this_process(self.sandbox, [Path(CourseDirectory(config=self.config).root)])

    def _budget(self, resources) -> float:
        """The whole notebook's time: set, or derived from the release so that added cells cannot stretch it."""
        if self.notebook_timeout > 0:
            return float(self.notebook_timeout)
        info = resources.get("nbgrader", {})
        try:
            release = nbformat.read(release_notebook_path(self.config, info["assignment"], info["notebook"]), 4)
            code_cells = sum(cell.cell_type == "code" for cell in release.cells)
        except (KeyError, OSError, ValueError):
            code_cells = 10
        return float(self.timeout) * max(code_cells, 1)


def _hidden_lines(source: str, hidden: ClearHiddenTests) -> list[int]:
    """The line numbers (from 1) of a check's hidden tests, delimiters included, as nbgrader's settings mark them."""
    lines, inside = [], False
    for number, line in enumerate(source.split("\n"), start=1):
        if hidden.begin_test_delimeter in line:
            inside = True
        if inside:
            lines.append(number)
        if hidden.end_test_delimeter in line:
            inside = False
    return lines


def _is_test(cell) -> bool:
    return utils.is_grade(cell) and not utils.is_solution(cell)


def _cell_name(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id") or "a cell"


class SandboxCheckingExporter(NotebookExporter):
    """nbgrader's notebook exporter for autograding, built only once this process's judge and sandbox run.

    nbgrader's converter builds its exporter in `BaseConverter.start()`, before `convert_notebooks` removes any
    earlier results; if the sandbox cannot start, this raises NbGraderException there, saying why, and nbgrader
    stops with every student's autograded notebooks and gradebook entries as they were."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.judge: JudgeService | None = None
        converter = self.parent
        if not any(_is_sandboxed_execute(step) for step in getattr(converter, "autograde_preprocessors", ())):
            return  # not autograding with the sandboxed runner: nothing to start
        settings = SandboxedExecute(parent=self)
        coursedir = getattr(converter, "coursedir", None)
        root = coursedir.root if coursedir is not None else CourseDirectory(config=self.config).root
        judge = judge_for_this_process(settings.sandbox, [Path(root)])
        try:
            judge.ensure_running()
        except SandboxUnavailable as error:
            message = (
                f"The grading sandbox cannot start, so nothing was graded and earlier results are kept. {error} "
                "(For plain nbgrader and the formgrader, the same choice is c.SandboxedExecute.sandbox = False in "
                "grader_config.py.)"
            )
            self.log.error(message)
            raise NbGraderException(message) from None
        self.judge = judge


def _is_sandboxed_execute(step) -> bool:
    """Whether an entry of `Autograde.autograde_preprocessors` (a class or its import name) is ours."""
    if isinstance(step, str):
        try:
            step = import_item(step)
        except Exception:  # noqa: BLE001 - nbgrader will say what is wrong with it
            return False
    return isinstance(step, type) and issubclass(step, SandboxedExecute)
