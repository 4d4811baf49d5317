"""Feedback pages that help without giving the hidden tests away, and that a submission cannot turn against
whoever opens them.

nbgrader's feedback shows test cells as they ran, hidden tests and tracebacks included (nbgrader #917), renders
whatever markdown and HTML the notebook holds, and has no time limit. Here, through nbgrader's own extension
points (the preprocessors of ``GenerateFeedback``, set in grader_config.py):

- ``RemoveHiddenTestLines`` takes the hidden lines of every test cell (and the gradebook's copy of them) and
  replaces any line that carries one, wherever else the page would show it: in any cell's output, and in the
  cells the student wrote. It runs before nbgrader's ``ClearHiddenTests``, which removes the hidden part of
  each test cell.
- ``ExplainFailures`` keeps only a failed check's message: the hints are written to be read, the test source
  is not.
- ``StudentContentAsText`` shows everything the student authored as text: their markdown and raw cells become
  escaped preformatted text (which no markdown parser or browser interprets, and which costs time linear in
  its length), outputs keep only their text, and notebook and cell metadata the templates read is reset.
  Only cells whose source is the instructor's, as recorded in the gradebook, render as markdown.
- ``PageStyle`` makes long lines wrap.

``autograd-course grade`` also renders each student's pages in a forked child that is killed past a time limit
(``FeedbackLimits.timeout``); the student then gets a page per notebook with the scores only.
"""

from __future__ import annotations

import bisect
import ctypes
import gc
import html
import json
import os
import re
import select
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from jinja2 import BytecodeCache
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from traitlets import Float, Integer, Unicode
from traitlets.config import Configurable

INSTRUCTOR_CELLS = "autograd_course_instructor_cells"  # where the gradebook's cells are kept in resources


# ------------------------------------------------------------------------------- whose is each cell
@dataclass(frozen=True)
class InstructorCell:
    """A cell of the notebook as the instructor wrote it (source/, recorded in the gradebook)."""

    cell_type: str
    source: str
    solution: bool
    grade: bool


# (db_url, assignment, notebook) -> its instructor cells, loaded once by a grading worker (see prepare_worker):
# the gradebook's source cells do not change during a grading run. Elsewhere each page reads the gradebook.
_preloaded: dict[tuple[str, str, str], dict[str, InstructorCell]] = {}


def _read_instructor_cells(gradebook, assignment_id: str, notebook_id: str) -> dict[str, InstructorCell]:
    from nbgrader.api import MissingEntry

    try:
        notebook = gradebook.find_notebook(notebook_id, assignment_id)
    except MissingEntry:
        return {}
    solutions = {cell.name for cell in notebook.solution_cells}
    grades = {cell.name for cell in notebook.grade_cells}
    return {
        cell.name: InstructorCell(cell.cell_type, cell.source or "", cell.name in solutions, cell.name in grades)
        for cell in notebook.source_cells
    }


def instructor_cells(resources) -> dict[str, InstructorCell]:
    """The gradebook's cells of the notebook being rendered, by grade id ({} when there is no gradebook)."""
    if INSTRUCTOR_CELLS not in resources:
        from nbgrader.api import Gradebook

        cells: dict[str, InstructorCell] = {}
        info = resources.get("nbgrader") or {}
        key = (info.get("db_url"), info.get("assignment"), info.get("notebook"))
        if key in _preloaded:
            cells = _preloaded[key]
        elif all(key):
            with Gradebook(info["db_url"]) as gradebook:
                cells = _read_instructor_cells(gradebook, info["assignment"], info["notebook"])
        resources[INSTRUCTOR_CELLS] = cells
    return resources[INSTRUCTOR_CELLS]


def role(cell, known: dict[str, InstructorCell], hidden: tuple[str, str]) -> str:
    """'test' or 'instructor' for a cell that is the instructor's word for word, 'answer' for an answer cell,
    'student' for anything else (cells the student added, or any cell that does not match the gradebook)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    name = meta.get("grade_id") if isinstance(meta, dict) else None
    original = known.get(name) if isinstance(name, str) else None
    if original is None or original.cell_type != cell.get("cell_type"):
        return "student"
    if original.solution:
        return "answer" if utils.is_solution(cell) else "student"
    test = original.grade and original.cell_type == "code"
    if utils.is_solution(cell) or cell.get("source") not in (original.source, _cleared(original.source, *hidden) if test else None):
        return "student"
    return "test" if test else "instructor"


def _cleared(source: str, begin: str, end: str) -> str:
    """A test cell's source as nbgrader's ClearHiddenTests leaves it."""
    return "\n".join(split_hidden(source, begin, end)[1])


def hidden_delimiters(preprocessor) -> tuple[str, str]:
    """The hidden-test delimiters as nbgrader's ClearHiddenTests is configured."""
    settings = ClearHiddenTests(parent=preprocessor)
    return settings.begin_test_delimeter, settings.end_test_delimeter


# --------------------------------------------------------------------------------- hidden test lines
# Characters a page does not show (whitespace, controls, zero-width and direction marks) and ANSI colour codes:
# ignored when looking for a hidden line, so that none of them can disguise one.
_INVISIBLE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f"
                        r"\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")


def _squeeze(text: str) -> str:
    return _INVISIBLE.sub("", text)


def split_hidden(source: str, begin: str, end: str) -> tuple[list[str], list[str]]:
    """The lines of ``source`` inside hidden-test regions, and the lines outside them."""
    hidden, visible, inside = [], [], False
    for line in source.split("\n"):
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            hidden.append(line)
        else:
            visible.append(line)
    return hidden, visible


class RemoveHiddenTestLines(NbGraderPreprocessor):
    """Replace every line that carries a line of hidden-test source, outside the test cells themselves."""

    min_length = Integer(
        16, help="Hidden lines shorter than this (whitespace runs counted as one space) are too common to remove."
    ).tag(config=True)
    marker = Unicode("[hidden test removed]", help="What a removed line is replaced with.").tag(config=True)

    def preprocess(self, nb, resources):
        self.begin, self.end = hidden_delimiters(self)
        known = instructor_cells(resources)
        roles = [role(cell, known, (self.begin, self.end)) for cell in nb.cells]
        hidden, public = [], []
        sources = [cell.source for cell in nb.cells if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)]
        sources += [cell.source for cell in known.values() if cell.grade and not cell.solution]
        for source in sources:
            inside, outside = split_hidden(source, self.begin, self.end)
            hidden += inside
            public += outside
        public += [line for cell in known.values() if not cell.solution for line in split_hidden(cell.source, self.begin, self.end)[1]]
        public_text = "\n".join(_squeeze(line) for line in public)
        self.secrets = sorted(
            {
                key
                for key in (_squeeze(line) for line in hidden if len(" ".join(line.split())) >= self.min_length)
                if key not in public_text
            }
        )
        for cell, whose in zip(nb.cells, roles, strict=True):
            if whose in ("answer", "student") and isinstance(cell.get("source"), str):
                cell.source = self.scrub(cell.source)
            for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
                self.scrub_output(output)
        return nb, resources

    def scrub_output(self, output) -> None:
        for key in ("text", "ename", "evalue"):
            if isinstance(output.get(key), str):
                output[key] = self.scrub(output[key])
        if isinstance(output.get("traceback"), list):
            output["traceback"] = [self.scrub("\n".join(str(line) for line in output["traceback"]))]
        if isinstance(output.get("data"), dict):
            for mimetype, value in output["data"].items():
                if isinstance(value, str):
                    output["data"][mimetype] = self.scrub(value)

    def scrub(self, text: str) -> str:
        """``text`` without hidden-test regions and with every line that carries a hidden line replaced."""
        lines = text.split("\n")
        keys = [_squeeze(line) for line in lines]
        squeezed = "".join(keys)
        removed = set()
        inside = False
        for index, line in enumerate(lines):
            if self.begin in line or self.end in line:
                inside = line.rfind(self.begin) > line.rfind(self.end) if self.end in line else True
                removed.add(index)
            elif inside:
                removed.add(index)
        if any(secret in squeezed for secret in self.secrets):
            starts, offset = [], 0
            for key in keys:
                starts.append(offset)
                offset += len(key)
            for secret in self.secrets:
                found = squeezed.find(secret)
                while found != -1:  # a line that holds it, or the lines it was split across
                    first = bisect.bisect_right(starts, found) - 1
                    last = bisect.bisect_right(starts, found + len(secret) - 1) - 1
                    removed.update(range(first, last + 1))
                    found = squeezed.find(secret, found + 1)
        if not removed:
            return text
        kept = []
        for index, line in enumerate(lines):
            if index not in removed:
                kept.append(line)
            elif index - 1 not in removed:
                kept.append(self.marker)
        return "\n".join(kept)


# ---------------------------------------------------------------------------------- failed checks
class ExplainFailures(NbGraderPreprocessor):
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    message = f"{output.ename}: {output.evalue}" if output.evalue else output.ename
                    output.traceback = [f"A check failed. {message}"]
        return cell, resources


# ------------------------------------------------------------------------------- student's content
# Every character that HTML, markdown, nbconvert's link rewriting (strip_files_prefix) or MathJax could read as
# syntax, as a character reference: the text inside the <pre> block is inert for all of them.
_INERT = str.maketrans({character: f"&#{ord(character)};" for character in "&<>\"'[]()=$\\`*_!#|~{}+-:^@%"})


def as_text_block(text: str) -> str:
    """Markdown that shows ``text`` as written: one HTML <pre> block with nothing left to interpret."""
    return f'<pre class="student-text">{text.translate(_INERT)}</pre>'


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "".join(value)
    return json.dumps(value, default=str)


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def safe_output(output) -> dict | None:
    """An output reduced to what the page shows as escaped text: streams, errors and text/plain."""
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return {"output_type": "stream", "name": name, "text": _text(output.get("text", ""))}
    if kind == "error":
        traceback_lines = output.get("traceback") if isinstance(output.get("traceback"), list) else []
        return {
            "output_type": "error", "ename": _text(output.get("ename", "")), "evalue": _text(output.get("evalue", "")),
            "traceback": [_text(line) for line in traceback_lines],
        }
    if kind in ("execute_result", "display_data"):
        data = output.get("data") if isinstance(output.get("data"), dict) else {}
        if "text/plain" in data:
            text = _text(data["text/plain"])
        else:
            text = "[output not shown: " + ", ".join(sorted(str(mimetype) for mimetype in data)) + "]"
        safe = {"output_type": kind, "data": {"text/plain": text}, "metadata": {}}
        if kind == "execute_result":
            safe["execution_count"] = _count(output.get("execution_count"))
        return safe
    return None


class StudentContentAsText(NbGraderPreprocessor):
    """Show what the student authored as text, so that nothing in it is interpreted by the page."""

    pygments_lexer = Unicode("ipython3", help="The lexer code cells are highlighted with.").tag(config=True)
    language = Unicode("python", help="The notebooks' language.").tag(config=True)

    def preprocess(self, nb, resources):
        known = instructor_cells(resources)
        from nbformat import from_dict

        metadata = {"language_info": {"name": self.language, "pygments_lexer": self.pygments_lexer}}
        if isinstance(nb.metadata.get("kernelspec"), dict):
            metadata["kernelspec"] = nb.metadata["kernelspec"]  # the gradebook's (nbgrader's OverwriteKernelspec)
        nb.metadata = from_dict(metadata)
        hidden = hidden_delimiters(self)
        nb.cells = [self.safe_cell(cell, role(cell, known, hidden)) for cell in nb.cells]
        return nb, resources

    def safe_cell(self, cell, whose: str):
        from nbformat import from_dict

        meta = cell.get("metadata", {})
        metadata = {"nbgrader": meta["nbgrader"]} if whose != "student" and isinstance(meta.get("nbgrader"), dict) else {}
        base = {"id": cell["id"]} if isinstance(cell.get("id"), str) else {}
        source = _text(cell.get("source", ""))
        if cell.get("cell_type") == "code":
            outputs = [safe for safe in map(safe_output, cell.get("outputs", []) or []) if safe is not None]
            return from_dict(
                {**base, "cell_type": "code", "metadata": metadata, "source": source, "outputs": outputs,
                 "execution_count": _count(cell.get("execution_count"))}
            )
        if cell.get("cell_type") == "markdown" and whose == "instructor":
            return from_dict({**base, "cell_type": "markdown", "metadata": metadata, "source": source})
        # the student's markdown and raw cells, and anything else
        return from_dict({**base, "cell_type": "markdown", "metadata": metadata, "source": as_text_block(source)})


# ------------------------------------------------------------------------------------------ exporter
class _CompiledTemplates(BytecodeCache):
    """Jinja2 bytecode kept in memory. Each student's pages are rendered by a new exporter (nbgrader makes one per
    `generate_feedback`) whose new Jinja2 environment would compile the templates again; a grading worker renders
    one page before it forks a child per student (prepare_worker), so every child starts with them compiled.
    Jinja2 checks each template's source against its checksum, so a changed template is compiled afresh."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        code = self.compiled.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()

    def clear(self) -> None:
        self.compiled.clear()


_compiled_templates = _CompiledTemplates()


class FeedbackPageExporter(HTMLExporter):
    """nbconvert's HTML exporter for feedback pages (``GenerateFeedback.exporter_class``, grader_config.py), less
    two costs. Its templates stay compiled across students (`_CompiledTemplates`). And it leaves out the
    accessibility pass nbconvert's `HTMLExporter.from_notebook_node` ends with, which parses and re-serialises the
    whole page with BeautifulSoup's pure-Python parser, half the time a page takes: that pass makes JupyterLab-
    template cells focusable (the feedback template is the classic one: there are none) and gives images without
    alternative text one (feedback pages show outputs as text: there are none from the student)."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _compiled_templates
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
        # HTMLExporter.from_notebook_node up to its BeautifulSoup pass (nbconvert 7.16-7.17).
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self, resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        return TemplateExporter.from_notebook_node(self, nb, resources, **kw)


# --------------------------------------------------------------------------------------- page style
class PageStyle(NbGraderPreprocessor):
    """Add CSS to the page (after nbconvert's CSSHTMLHeaderPreprocessor, which sets the page's CSS): long lines
    of outputs (a failed check's hint), code and the student's text wrap instead of being cut off."""

    css = Unicode(
        "div.output_area pre, div.output_subarea pre, div.input_area pre, pre.student-text {\n"
        "  white-space: pre-wrap;\n  overflow-wrap: anywhere;\n  word-break: normal;\n}\n",
        help="CSS added to every feedback page.",
    ).tag(config=True)

    def preprocess(self, nb, resources):
        inlining = resources.setdefault("inlining", {})
        inlining["css"] = [*inlining.get("css", []), self.css]
        return nb, resources


# ------------------------------------------------------------------------------------- time limit
class FeedbackLimits(Configurable):
    timeout = Float(
        60, help="Seconds `autograd-course grade` allows for rendering one student's feedback pages; past it the "
        "rendering is killed and the student gets pages with the scores only."
    ).tag(config=True)


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the process that forked it dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def run_with_time_limit(function, seconds: float) -> dict:
    """``function()`` (which returns a JSON-able dict) in a forked child killed after ``seconds``.

    Returns what it returned, or {"success": False, "timed_out": True} when it was killed, or {"success": False,
    "error": ...} when it raised or died.
    """
    parent = os.getpid()
    read_end, write_end = os.pipe()
    # The child's garbage collector leaves the objects it inherits alone: scanning them would copy every page
    # of the parent's heap into the child (about a third of a page's rendering time, measured).
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        os.close(read_end)
        os.close(write_end)
        raise
    if pid != 0:
        gc.unfreeze()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(read_end)
            _die_with_parent()
            if os.getppid() != parent:
                os._exit(1)
            try:
                result = function()
            except BaseException:  # noqa: BLE001 - reported to the parent
                result = {"success": False, "error": traceback.format_exc()}
            payload = json.dumps(result, default=str).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_end, view):]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    chunks, timed_out = [], False
    deadline = time.monotonic() + seconds
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_end], [], [], remaining)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    if timed_out:
        return {"success": False, "timed_out": True}
    try:
        result = json.loads(b"".join(chunks))
    except ValueError:
        result = None
    return result if isinstance(result, dict) else {"success": False, "error": "the child process ended without a result"}


def _reap(pid: int, grace: float = 1.0) -> None:
    """Wait for a child that has finished or been killed; kill it if it lingers ``grace`` seconds after closing its
    pipe."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (Linux < 5.3): poll
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.001)
    else:
        try:
            ready, _, _ = select.select([pidfd], [], [], grace)
        finally:
            os.close(pidfd)
        if ready:
            os.waitpid(pid, 0)
            return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def prepare_worker(api, assignment_id: str) -> None:
    """In a grading worker, before it forks a child per student: load the instructor's cells of the assignment's
    notebooks (fixed for the run), and render one page from the release, so that each child starts with what
    the first rendering imports, compiles and caches (regular expressions, lexers, templates' modules)."""
    import nbformat
    from nbgrader.api import Gradebook
    from nbgrader.converters import GenerateFeedback
    from nbgrader.preprocessors import GetGrades
    from traitlets.config import Config
    from traitlets.utils.importstring import import_item

    try:
        coursedir = api.coursedir
        with Gradebook(coursedir.db_url) as gradebook:
            notebooks = [notebook.name for notebook in gradebook.find_assignment(assignment_id).notebooks]
            for notebook_id in notebooks:
                _preloaded[(coursedir.db_url, assignment_id, notebook_id)] = _read_instructor_cells(
                    gradebook, assignment_id, notebook_id
                )
        release = sorted(Path(coursedir.format_path(coursedir.release_directory, ".", assignment_id)).glob("*.ipynb"))
        if not release:
            return
        converter = GenerateFeedback(coursedir=coursedir, parent=api)
        converter.update_config(Config({"HTMLExporter": {"template_name": "feedback"}}))  # as the API does
        exporter = converter.exporter_class(parent=converter, config=converter.config)
        for preprocessor in converter.preprocessors:
            step = import_item(preprocessor) if isinstance(preprocessor, str) else preprocessor
            if not (isinstance(step, type) and issubclass(step, GetGrades)):  # there is no submission to read
                exporter.register_preprocessor(step)
        resources = {"nbgrader": {"notebook": release[0].stem, "assignment": assignment_id, "student": "",
                                  "db_url": coursedir.db_url, "score": 0, "max_score": 0, "late_penalty": 0}}
        exporter.from_notebook_node(nbformat.read(release[0], 4), resources)
    except Exception:  # noqa: BLE001, S110 - only a head start: each child reads and renders on its own anyway
        pass


def generate_with_time_limit(api, assignment_id: str, student_id: str, seconds: float) -> dict:
    """nbgrader's generate_feedback for one student, in a child process killed after ``seconds``."""
    return run_with_time_limit(lambda: api.generate_feedback(assignment_id, student_id, force=True), seconds)


def student_feedback(api, assignment_id: str, student_id: str, seconds: float) -> str:
    """Write one student's feedback pages within ``seconds``; return a note for grades.csv ('' when all went well).

    When the pages cannot be rendered in time (or at all), each graded notebook gets a page with its scores only.
    """
    result = generate_with_time_limit(api, assignment_id, student_id, seconds)
    if result.get("success"):
        return ""
    if result.get("timed_out"):
        why = f"took longer than {seconds:g} s to render and were stopped"
    else:
        text = (result.get("error") or result.get("log") or "").strip()
        why = f"could not be rendered ({text.splitlines()[-1] if text else 'no detail'})"
    try:
        written = write_scores_only_pages(api.coursedir, assignment_id, student_id, why)
    except Exception:  # noqa: BLE001 - no gradebook entry, unwritable folder: the note says there are no pages
        written = []
    if written:
        return f"feedback: the detailed pages {why}; pages with the scores only were written"
    return f"feedback: the pages {why}"


# ------------------------------------------------------------------------------ scores-only pages
_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }}
</style>
</head>
<body>
<h1>{title} (Score: {score} / {max_score})</h1>
<p>{sentence}</p>
<table>
<tr><th>part</th><th>score</th></tr>
{rows}
</table>
</body>
</html>
"""


def _number(value) -> str:
    return f"{float(value or 0):g}"


def write_scores_only_pages(coursedir, assignment_id: str, student_id: str, why: str) -> list[Path]:
    """A page per autograded notebook of the student with the score of each part, from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    source = Path(coursedir.format_path(coursedir.autograded_directory, student_id, assignment_id))
    target = Path(coursedir.format_path(coursedir.feedback_directory, student_id, assignment_id))
    written = []
    sentence = f"The detailed feedback page for this notebook {why}. These are your scores."
    with Gradebook(coursedir.db_url) as gradebook:
        for path in sorted(source.glob("*.ipynb")):
            try:
                notebook = gradebook.find_submission_notebook(path.stem, assignment_id, student_id)
            except MissingEntry:
                continue
            penalty = notebook.late_submission_penalty or 0
            rows = "\n".join(
                f"<tr><td>{html.escape(grade.name)}</td><td>{_number(grade.score)} / {_number(grade.max_score)}</td></tr>"
                for grade in sorted(notebook.grades, key=lambda grade: grade.name)
            )
            page = _PAGE.format(
                title=html.escape(path.stem), score=_number(notebook.score - penalty), max_score=_number(notebook.max_score),
                sentence=html.escape(sentence), rows=rows,
            )
            target.mkdir(parents=True, exist_ok=True)
            destination = target / f"{path.stem}.html"
            temporary = destination.with_name(f".{destination.name}.tmp")
            temporary.write_text(page, encoding="utf-8")
            os.chmod(temporary, 0o644)
            temporary.replace(destination)
            written.append(destination)
    return written
