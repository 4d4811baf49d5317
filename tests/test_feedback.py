"""Feedback pages: nothing a student authored runs in them, slows them down or carries the hidden tests into them,
and a student whose pages cannot be rendered in time still gets their scores.

Most tests render one notebook with nbgrader's own feedback converter (``generate_feedback`` through the
NbGraderAPI, configured by the course's grader_config.py) in a scratch course whose gradebook knows the
assignment. The notebook stands in for an autograded one: the source notebook (the solutions, and the hidden
tests that nbgrader puts back at grading), changed by each test the way a submission and its run could change it.
"""

from __future__ import annotations

import csv
import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output, new_raw_cell

from autograd_course import feedback
from autograd_course.catalog import solved, submission
from autograd_course.grading import prepare_gradebook, quiet_nbgrader_warnings

from course_helpers import copy_course, marks, submit
from gradebook_helpers import active_content, shown_text

pytestmark = pytest.mark.slow

Q6 = "q6_basic_gradients"
MARK = "xssmark31337"  # in every injected tag, attribute and script: it may appear in the page only as text
VENV_BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A course whose gradebook knows the assignment (as during `autograd-course grade`)."""
    quiet_nbgrader_warnings()
    course = copy_course(tmp_path_factory.mktemp("feedback") / "course")
    prepare_gradebook(course)
    return course


def autograded(course, student: str, edit=None, notebook_id: str = Q6):
    """Put an 'autograded' notebook in place for ``student`` (the source notebook, changed by ``edit``), with a
    submission in the gradebook; return the notebook."""
    from nbgrader.api import Gradebook

    nb = nbformat.read(course.source_dir / f"{notebook_id}.ipynb", 4)
    if edit is not None:
        edit(nb)
    folder = course.autograded_dir / student / course.assignment_id
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{notebook_id}.ipynb")
    with Gradebook(f"sqlite:///{course.gradebook}") as gradebook:
        gradebook.update_or_create_student(student)
        gradebook.add_submission(course.assignment_id, student)
    return nb


def render(course, student: str, edit=None, notebook_id: str = Q6) -> str:
    """The feedback page nbgrader writes for that notebook (raw HTML)."""
    autograded(course, student, edit, notebook_id)
    result = course.nbgrader_api().generate_feedback(course.assignment_id, student, force=True)
    assert result["success"], result.get("error") or result.get("log")
    return (course.feedback_dir / student / course.assignment_id / f"{notebook_id}.html").read_text(encoding="utf-8")


def index_of(nb, grade_id: str) -> int:
    return next(i for i, cell in enumerate(nb.cells) if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def active(page: str) -> list[str]:
    return active_content(page, MARK)


def hidden_lines(course, notebook_id: str = Q6) -> list[str]:
    source = nbformat.read(course.source_dir / f"{notebook_id}.ipynb", 4)
    lines = []
    for cell in source.cells:
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.S):
            lines += [line.strip() for line in block.splitlines() if line.strip()]
    return lines


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


INJECTIONS = [
    f"<script>window.{MARK} = 1</script>",
    f"<img src=x onerror=\"window.{MARK}=1\">",
    f"<svg><script>{MARK}()</script></svg>",
    f"<svg onload=\"{MARK}()\"></svg>",
    f"<iframe srcdoc=\"<script>{MARK}()</script>\"></iframe>",
    f"[click me](javascript:{MARK}())",
    f"<a href=\"javascript:{MARK}()\">link</a>",
    f"<style>body {{ background: url(javascript:{MARK}) }}</style>",
    f"<div style=\"background:url(x)\" onmouseover=\"{MARK}()\">hover</div>",
    f"</pre></div><script>{MARK}()</script>",
    f"<!-- --><script>{MARK}()</script>",
    f"<math><mtext><table><mglyph><style><img src=x onerror={MARK}()>",
]


# ---------------------------------------------------------------------------------- honest pages
def test_instructor_text_renders_and_parts_are_scored(prepared):
    page = render(prepared, "honest")
    soup = BeautifulSoup(page, "html.parser")
    assert "Question 6" in soup.find("h1").get_text(), "the instructor's markdown should render as HTML"
    assert "Grade cell: <code>q6_gradient</code>" in page  # nbgrader's panel with the part's score
    assert "Test cell</a> (Score: 0.0 / 4.0)" in page
    assert "x = torch.tensor([2.0], requires_grad=True)" in shown_text(page)  # the student's code, highlighted
    assert not active(page)


# ------------------------------------------------------------------------------ student's markup
@pytest.mark.parametrize("kind", ["markdown", "raw", "raw text/html"])
def test_what_a_student_adds_is_shown_as_text_and_never_runs(prepared, kind):
    text = "# A heading\n\n" + "\n\n".join(INJECTIONS)

    def add(nb):
        if kind == "markdown":
            cell = new_markdown_cell(text)
        else:
            cell = new_raw_cell(text, metadata={"raw_mimetype": "text/html"} if "html" in kind else {})
        nb.cells.insert(index_of(nb, "q6-gradient-answer") + 1, cell)

    page = render(prepared, f"adds_{kind.replace(' ', '_').replace('/', '_')}", add)
    assert not active(page)
    shown = shown_text(page)
    for injection in INJECTIONS:
        assert injection in shown, injection  # shown as written, for the instructor to see
    assert "# A heading" in shown  # not rendered as a heading


def test_answers_outputs_and_metadata_are_shown_as_text(prepared):
    def poison(nb):
        answer = nb.cells[index_of(nb, "q6-gradient-answer")]
        answer.metadata["tags"] = [f'"><script>{MARK}()</script>']
        answer.metadata["magics_language"] = "html"
        answer.outputs = [
            new_output("stream", name="stdout", text=f"<script>{MARK}()</script>\n"),
            new_output("display_data", data={
                "text/html": f"<img src=x onerror={MARK}()>", "application/javascript": f"{MARK}()",
                "image/svg+xml": f"<svg onload=\"{MARK}()\"/>", "text/markdown": f"<script>{MARK}()</script>",
                "text/latex": f"\\href{{javascript:{MARK}()}}{{x}}",
            }, metadata={"text/html": {"isolated": True}}),
            new_output("execute_result", data={"text/html": f"<b onclick={MARK}()>b</b>",
                                               "text/plain": f"<b onclick={MARK}()>plain</b>"}, execution_count=1),
            new_output("display_data", data={"image/png": "iVBORw0KGgo=", "application/vnd.jupyter.widget-view+json":
                                             {"model_id": MARK}}),
            new_output("error", ename=f"<script>{MARK}()</script>", evalue=f"<img src=x onerror={MARK}()>",
                       traceback=[f"<script>{MARK}()</script>"]),
        ]
        nb.cells[index_of(nb, "q6_gradient")].outputs = [
            new_output("error", ename="AssertionError", evalue=f"<script>{MARK}()</script>", traceback=["x"])
        ]
        nb.metadata["language_info"] = {"name": "html", "pygments_lexer": "html"}
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {MARK: 1}}}
        nb.metadata["title"] = f"</title><script>{MARK}()</script>"
        # Grading metadata on cells that are not the instructor's (the integrity check strips it before; not here):
        nb.cells.append(new_code_cell(f"# <script>{MARK}()</script>", metadata={"nbgrader": {
            "grade": False, "grade_id": f'x"><script>{MARK}()</script>', "solution": False, "locked": True}}))
        copied = nbformat.from_dict(nb.cells[index_of(nb, "q6_gradient")])
        copied.source, copied.id = f"# <script>{MARK}()</script>", "copied"
        copied.metadata["nbgrader"]["points"] = 100
        nb.cells.append(copied)

    page = render(prepared, "poisons_outputs", poison)
    assert not active(page)
    shown = shown_text(page)
    assert f"<b onclick={MARK}()>plain</b>" in shown  # text/plain, escaped
    assert f"A check failed. AssertionError: <script>{MARK}()</script>" in shown  # the failed check's message
    assert "[output not shown: application/vnd.jupyter.widget-view+json, image/png]" in shown
    assert page.count("Grade cell: <code>q6_gradient</code>") == 1  # the copy is not shown as a part


def test_a_huge_pathological_markdown_cell_renders_quickly(prepared):
    """Before: nbconvert's link rewriting is cubic in such text (16 KB took over a minute). A generous bound."""
    student = "pathological"
    autograded(prepared, student, lambda nb: nb.cells.append(new_markdown_cell("[a](/files/" * 12_000)))  # 132 KB
    api = prepared.nbgrader_api()
    started = time.monotonic()
    result = feedback.run_with_time_limit(lambda: api.generate_feedback(prepared.assignment_id, student, force=True), 120)
    assert result.get("success"), result
    assert time.monotonic() - started < 60
    page = (prepared.feedback_dir / student / prepared.assignment_id / f"{Q6}.html").read_text(encoding="utf-8")
    assert "[a](/files/[a](/files/" in shown_text(page)


# --------------------------------------------------------------------------------- hidden tests
def test_hidden_lines_are_removed_wherever_they_appear(prepared):
    secrets = [line for line in hidden_lines(prepared) if len(line) >= 40]
    assert len(secrets) >= 6, secrets
    one, two, three, four, five, six = secrets[:6]

    def leak(nb):
        answer = nb.cells[index_of(nb, "q6-gradient-answer")]
        answer.source += f"\n# copied: {one}\n"
        answer.outputs = [
            new_output("stream", name="stdout", text=f"before\n    {two}\nafter\n"),
            new_output("stream", name="stderr", text=f"\x1b[31m{three[:10]}\x1b[0m{three[10:]}\n"),  # ANSI-coloured
            new_output("execute_result", data={"text/plain": "\u200b".join(four)}, execution_count=1),  # zero-width
        ]
        test = nb.cells[index_of(nb, "q6_gradient")]
        test.outputs = [
            new_output("stream", name="stdout", text=f"{five[:20]}\n{five[20:]}\n"),  # split over two lines
            new_output("error", ename="AssertionError", evalue=f"tensor mismatch; {six}",
                       traceback=[f"----> 3 {six}", "AssertionError"]),
        ]
        nb.cells.append(new_markdown_cell(f"My notes:\n\n{one}\n\nThe end."))
        nb.cells.append(new_raw_cell(f"{two}"))

    page = render(prepared, "leaks_hidden_lines", leak)
    text = shown_text(page)
    for line in secrets[:6]:
        assert squeezed(line) not in squeezed(text.replace("\u200b", "")), line
    assert text.count("[hidden test removed]") >= 8
    assert "before" in text and "after" in text and "The end." in text  # the rest is kept
    assert "A check failed. AssertionError: [hidden test removed]" in text


def test_lines_students_see_anyway_are_not_removed(prepared):
    # Hidden-test lines that are also in the release, and short ones, are no secret and stay in the student's code.
    public = 'warnings.simplefilter("ignore")'
    assert public in hidden_lines(prepared)

    def write(nb):
        # `except OSError:` is shorter than RemoveHiddenTestLines.min_length, whatever the hidden tests hold.
        nb.cells[index_of(nb, "q6-gradient-answer")].source += f"\nimport warnings\n{public}\ntry:\n    pass\nexcept OSError:\n    pass\n"

    text = shown_text(render(prepared, "writes_public_lines", write))
    assert public in text and "try:" in text
    assert "[hidden test removed]" not in text


def test_hidden_test_markers_in_student_cells_cannot_break_or_fool_the_page(prepared):
    # nbgrader's ClearHiddenTests refuses a non-test cell with hidden-test markers; the student's are removed first.
    def mark(nb):
        nb.cells.append(new_code_cell("x = 1\n### BEGIN HIDDEN TESTS\nprint('mine')\n"))  # never ended
        nb.cells.append(new_markdown_cell("### END HIDDEN TESTS\nvisible"))

    text = shown_text(render(prepared, "writes_markers", mark))
    assert "HIDDEN TESTS" not in text and "print('mine')" not in text
    assert "x = 1" in text and "visible" in text


def test_plain_nbgrader_generate_feedback_uses_the_same_steps(prepared, tmp_path):
    course = copy_course(tmp_path / "course")
    prepare_gradebook(course)
    secret = next(line for line in hidden_lines(course) if len(line) >= 40)
    autograded(course, "plain", lambda nb: nb.cells.append(new_markdown_cell(f"<script>{MARK}()</script>\n\n{secret}")))
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run([str(VENV_BIN / "nbgrader"), "generate_feedback", course.assignment_id], cwd=course.root,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    page = (course.feedback_dir / "plain" / course.assignment_id / f"{Q6}.html").read_text(encoding="utf-8")
    assert not active(page)
    assert f"<script>{MARK}()</script>" in shown_text(page)
    assert squeezed(secret) not in squeezed(shown_text(page))


# ------------------------------------------------------------------------------------ page style
def test_long_lines_in_outputs_wrap(prepared):
    page = render(prepared, "long_hint", lambda nb: setattr(nb.cells[index_of(nb, "q6_gradient")], "outputs", [
        new_output("error", ename="AssertionError", evalue="x.grad is wrong " * 40, traceback=["x"])]))
    styles = "\n".join(style.get_text() for style in BeautifulSoup(page, "html.parser").find_all("style"))
    rule = re.search(r"div\.output_area pre[^{]*\{([^}]*)\}", styles)
    assert rule and "white-space: pre-wrap" in rule.group(1), "output text should wrap"


# ------------------------------------------------------------------------------------- time limit
def test_the_child_is_killed_at_the_time_limit(tmp_path):
    pid_file = tmp_path / "pid"

    def hang():
        pid_file.write_text(str(os.getpid()))
        while True:
            time.sleep(1)

    started = time.monotonic()
    result = feedback.run_with_time_limit(hang, 1)
    assert result == {"success": False, "timed_out": True}
    assert time.monotonic() - started < 30
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_the_childs_result_or_error_comes_back():
    assert feedback.run_with_time_limit(lambda: {"success": True, "log": "x" * 300_000}, 30)["log"] == "x" * 300_000
    failed = feedback.run_with_time_limit(lambda: 1 / 0, 30)
    assert failed["success"] is False and "ZeroDivisionError" in failed["error"]
    died = feedback.run_with_time_limit(lambda: os._exit(3), 30)
    assert died["success"] is False and "without a result" in died["error"]


class SlowAPI:
    """An nbgrader API whose feedback never finishes."""

    def __init__(self, api):
        self.coursedir = api.coursedir

    def generate_feedback(self, *args, **kwargs):
        time.sleep(3600)


def test_past_the_time_limit_the_student_gets_their_scores(prepared):
    from nbgrader.api import Gradebook

    student = "slow_to_render"
    autograded(prepared, student)
    points = {"q6_gradient": 4, "q6a_analytic_gradient": 0, "q6b_no_grad_error": 2, "q6c_tracking": 1.5}
    with Gradebook(f"sqlite:///{prepared.gradebook}") as gradebook:
        for grade in gradebook.find_submission_notebook(Q6, prepared.assignment_id, student).grades:
            grade.auto_score = points[grade.name]
        gradebook.db.commit()
    folder = prepared.feedback_dir / student / prepared.assignment_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{Q6}.html").write_text("half a page, cut off by the kill")

    note = feedback.student_feedback(SlowAPI(prepared.nbgrader_api()), prepared.assignment_id, student, 1)
    assert note == ("feedback: the detailed pages took longer than 1 s to render and were stopped; "
                    "pages with the scores only were written")
    page = (folder / f"{Q6}.html").read_text(encoding="utf-8")
    text = " ".join(shown_text(page, " ").split())
    assert "Score: 7.5 / 10" in text
    for part, score in points.items():
        assert re.search(rf"{part} {score:g} / \d+", text), part
    assert "The detailed feedback page for this notebook took longer than 1 s to render" in text
    assert not active(page) and "<script" not in page


def test_grading_past_the_feedback_time_limit_leaves_scores_and_a_note(tmp_path):
    """The real `autograd-course grade`, with a feedback time limit no rendering can meet."""
    course = copy_course(tmp_path / "course")
    config = course.root / "grader_config.py"
    config.write_text(config.read_text().replace("c.FeedbackLimits.timeout = 60", "c.FeedbackLimits.timeout = 0.01"))
    submit(course, "solver", {notebook_id: solved(course, notebook_id) for notebook_id in course.notebook_ids})
    submit(course, "blank", {notebook_id: submission(course, notebook_id) for notebook_id in course.notebook_ids})
    result = subprocess.run([str(VENV_BIN / "autograd-course"), "grade", "--jobs", "2"], cwd=course.root,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    with open(course.grades_csv, newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert (rows["solver"]["score"], rows["solver"]["status"]) == (marks(), "ok")
    assert (rows["blank"]["score"], rows["blank"]["status"]) == ("0", "ok")
    for student in rows:
        assert rows[student]["notes"] == ("feedback: the detailed pages took longer than 0.01 s to render and were "
                                          "stopped; pages with the scores only were written")
        for notebook_id in course.notebook_ids:
            page = (course.feedback_dir / student / course.assignment_id / f"{notebook_id}.html").read_text()
            assert "could not" not in page and "took longer than 0.01 s" in html.unescape(page)
    q6 = " ".join(shown_text((course.feedback_dir / "solver" / course.assignment_id / f"{Q6}.html").read_text(), " ").split())
    assert "Score: 10 / 10" in q6 and "q6_gradient 4 / 4" in q6
    assert not (course.root / ".grading").exists()


# ------------------------------------------------------------------------------------- unit level
HIDDEN = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")  # nbgrader's delimiters, as grader_config.py leaves them


def test_whose_cell_is_it():
    known = {
        "intro": feedback.InstructorCell("markdown", "# Intro", solution=False, grade=False),
        "answer": feedback.InstructorCell("markdown", "YOUR ANSWER HERE", solution=True, grade=True),
        "test": feedback.InstructorCell("code", "assert x\n### BEGIN HIDDEN TESTS\nassert y\n### END HIDDEN TESTS",
                                        solution=False, grade=True),
    }

    def cell(kind, source, **meta):
        made = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        if meta:
            made.metadata["nbgrader"] = meta
        return made

    assert feedback.role(cell("markdown", "# Intro", grade_id="intro", locked=True), known, HIDDEN) == "instructor"
    assert feedback.role(cell("markdown", "# Intro, edited", grade_id="intro", locked=True), known, HIDDEN) == "student"
    assert feedback.role(cell("markdown", "# Intro"), known, HIDDEN) == "student"  # no metadata: added
    assert feedback.role(cell("code", "# Intro", grade_id="intro"), known, HIDDEN) == "student"  # wrong type
    assert feedback.role(cell("markdown", "mine", grade_id="answer", solution=True, grade=True), known, HIDDEN) == "answer"
    assert feedback.role(cell("markdown", "mine", grade_id="answer", solution=False), known, HIDDEN) == "student"
    assert feedback.role(cell("code", known["test"].source, grade_id="test", grade=True), known, HIDDEN) == "test"
    assert feedback.role(cell("code", "assert x", grade_id="test", grade=True), known, HIDDEN) == "test"  # hidden part cleared
    assert feedback.role(cell("markdown", "# Intro", grade_id="unknown", locked=True), known, HIDDEN) == "student"


def test_an_answer_in_markdown_keeps_its_panel_and_is_shown_as_text():
    safe = feedback.StudentContentAsText().safe_cell(
        new_markdown_cell(f"<script>{MARK}()</script> [x](/files/y)", metadata={"nbgrader": {"grade_id": "a", "solution": True}}),
        "answer",
    )
    assert safe.cell_type == "markdown" and safe.metadata == {"nbgrader": {"grade_id": "a", "solution": True}}
    assert safe.source.startswith('<pre class="student-text">') and safe.source.endswith("</pre>")
    assert "<" not in safe.source[len('<pre class="student-text">'):-len("</pre>")]
    assert "[" not in safe.source
    assert html.unescape(safe.source) == f'<pre class="student-text"><script>{MARK}()</script> [x](/files/y)</pre>'
