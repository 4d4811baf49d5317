"""The formgrader's view of a submission: what the student authored is shown as text there too.

nbgrader's formgrader (its "Submissions" pages, where an instructor reads and hand-grades a notebook) renders the
autograded notebook with nbconvert's HTMLExporter and its own ``formgrade`` template, which passes every markdown
cell through a markdown renderer that keeps raw HTML. ``HTMLExporter.sanitize_html`` does not reach those cells.
A student's markdown cell could then run script on the Jupyter server's origin when the instructor opens the
page: act as the instructor, whose server can read and rewrite the gradebook and run code.

`StudentTextInFormgrader` is one of the HTMLExporter's own preprocessors (set in grader_config.py): student
markdown and raw cells become escaped preformatted text, as in the feedback pages, and outputs keep only their
text. A markdown cell is the instructor's when it carries nbgrader's metadata and is not an answer cell: in every
autograded notebook of this course, `integrity.RestoreGradedCells` has put such cells back to the release's
source and removed nbgrader's metadata from every cell the release does not have.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from nbformat import from_dict

from .feedback import as_text_block, safe_output


def _nbgrader(cell) -> dict | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else None


class StudentTextInFormgrader(Preprocessor):
    def preprocess(self, nb, resources):
        # nbgrader's own converters (feedback pages) have their preprocessors for this: see feedback.py.
        if "nbgrader" in resources:
            return nb, resources
        nb.cells = [self.safe_cell(cell) for cell in nb.cells]
        return nb, resources

    def safe_cell(self, cell):
        meta = _nbgrader(cell)
        kind = cell.get("cell_type")
        source = cell.get("source", "")
        source = source if isinstance(source, str) else "".join(map(str, source))
        base = {"id": cell["id"]} if isinstance(cell.get("id"), str) else {}
        if kind == "code":
            cell.outputs = [safe for safe in map(safe_output, cell.get("outputs", []) or []) if safe is not None]
            return cell
        if kind == "markdown" and meta is not None and not meta.get("solution"):
            return cell  # the instructor's, as released
        # An answer in markdown keeps its metadata, so that the formgrader's grading panel is still shown.
        metadata = {"nbgrader": meta} if kind == "markdown" and meta is not None else {}
        return from_dict({**base, "cell_type": "markdown", "metadata": metadata, "source": as_text_block(source)})
