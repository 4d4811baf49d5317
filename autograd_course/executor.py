"""nbgrader's Execute step, replaced: notebooks run in the warm sandboxed runner instead of a Jupyter kernel.

Configured in grader_config.py as the first of `Autograde.autograde_preprocessors`, so `autograd-course grade`
and a plain `nbgrader autograde` in the course root both grade this way.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbgrader import utils
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer

from . import outcomes
from .runner import GRACE_SECONDS
from .sandbox import RunnerFailed, runner_for_this_process

NOT_RUN = {
    "output_type": "error",
    "ename": "NotExecuted",
    "evalue": "this cell was not run",
    "traceback": ["NotExecuted: this cell was not run, so it earns no points"],
}


class SandboxedExecute(Execute):
    sandbox = Bool(
        True,
        help="Run student code in the bubblewrap sandbox. False runs it as you, with your files in reach: only "
        "for code you trust.",
    ).tag(config=True)
    memory_limit_mb = Integer(2048, help="Memory a notebook's code may allocate, in MiB.").tag(config=True)
    output_limit = Integer(100_000, help="Characters of output kept per cell; the rest is dropped.").tag(config=True)

    def preprocess(self, nb, resources):
        code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        request = {
            "cells": [{"source": cell.source, "test": _is_test(cell)} for cell in code_cells],
            "cell_timeout": float(self.timeout),
            "memory_mb": self.memory_limit_mb,
            "output_limit": self.output_limit,
        }
        # Enough for every cell to use its whole time once more after a restart, and then some.
        budget = 60 + 2 * len(code_cells) * (self.timeout + GRACE_SECONDS)
        try:
            course_root = CourseDirectory(config=self.config).root
            reply = runner_for_this_process(self.sandbox, [Path(course_root)]).run(request, budget)
            if "error" in reply:
                raise RunnerFailed(reply["error"])
            results, events = reply["cells"], reply["events"]
        except RunnerFailed as error:
            self.log.error("Could not run %s: %s", resources.get("unique_key"), error)
            results = [None] * len(code_cells)
            events = [{"kind": "error", "cell": None, "detail": f"the grader could not run this notebook: {error}"}]
        for cell, result in zip(code_cells, results):
            if result is None:
                cell.outputs = [nbformat.from_dict(NOT_RUN)]
                cell.execution_count = None
            else:
                cell.outputs = [nbformat.from_dict(output) for output in result["outputs"]]
                cell.execution_count = result["execution_count"]
        for event in events:
            where = _cell_name(code_cells[event["cell"]]) if event.get("cell") is not None else None
            outcomes.add_event(nb, event["kind"], event["detail"], where)
        return nb, resources


def _is_test(cell) -> bool:
    return utils.is_grade(cell) and not utils.is_solution(cell)


def _cell_name(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id") or "a cell"
