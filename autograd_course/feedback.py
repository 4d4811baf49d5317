"""Feedback that helps without giving the hidden tests away.

nbgrader's feedback shows test cells as they ran, hidden tests and tracebacks included (nbgrader #917). Here
the hidden part of each test cell is removed (nbgrader's own ClearHiddenTests, reused), and a failed test's
error output keeps only its message: the hints are written to be read, the test source is not.
"""

from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor


class ExplainFailures(NbGraderPreprocessor):
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    message = f"{output.ename}: {output.evalue}" if output.evalue else output.ename
                    output.traceback = [f"A check failed. {message}"]
        return cell, resources
