"""The course's one configuration, read by nbgrader (through nbgrader_config.py) and by autograd-course.

It is a traitlets config file: ``c`` is the configuration object nbgrader and autograd-course share.
"""

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# --- the course ---------------------------------------------------------------------------------
c.CourseDirectory.course_id = "autograd-basics"
c.CourseSettings.assignment_id = "autograd_basics"
c.CourseSettings.total_points = 40

# --- what students see in place of solutions ----------------------------------------------------
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# --- grading --------------------------------------------------------------------------------------
# Seconds one cell may run before it is stopped and counted as a timeout.
c.Execute.timeout = 30

# The preprocessor lists are nbgrader's own defaults with our steps put in, so that they follow nbgrader:
# student code runs in a sandboxed kernel and the checks in a judge instead of a Jupyter kernel
# (autograd_course/executor.py), and a submission's graded cells are put back as released before nbgrader's own
# checks (integrity.py). Plain `nbgrader autograde` in the course root grades the same way.
from nbgrader.converters import Autograde, GenerateFeedback  # noqa: E402


def _names(trait) -> list[str]:
    return [f"{step.__module__}.{step.__name__}" if isinstance(step, type) else step for step in trait.default()]


def _after(steps: list[str], anchor: str, *new: str) -> list[str]:
    at = steps.index(anchor) + 1
    return [*steps[:at], *new, *steps[at:]]


c.Autograde.sanitize_preprocessors = _after(
    _names(Autograde.sanitize_preprocessors),
    "nbgrader.preprocessors.clearoutput.ClearOutput",
    "autograd_course.integrity.RestoreGradedCells",
)
c.Autograde.autograde_preprocessors = [
    "autograd_course.executor.SandboxedExecute" if step == "nbgrader.preprocessors.execute.Execute" else step
    for step in _names(Autograde.autograde_preprocessors)
]
# nbgrader removes a student's earlier results before grading them again: this exporter starts the sandboxed
# runner first and stops the run, with the results kept, if it cannot start.
c.Autograde.exporter_class = "autograd_course.executor.SandboxCheckingExporter"
c.SandboxedExecute.memory_limit_mb = 2048
c.SandboxedExecute.output_limit = 100_000

# --- feedback --------------------------------------------------------------------------------------
# Feedback shows each part's score and the failed checks' messages, never the hidden tests' source; whatever the
# student authored (added markdown and raw cells, answers, outputs) is shown as escaped text, which no browser
# runs and no markdown parser slows down on (autograd_course/feedback.py). Plain `nbgrader generate_feedback`
# in the course root renders the same way.
# nbconvert's HTML exporter, less two costs that feedback pages do not need (autograd_course/feedback.py).
c.GenerateFeedback.exporter_class = "autograd_course.feedback.FeedbackPageExporter"
c.GenerateFeedback.preprocessors = [
    *_after(
        _names(GenerateFeedback.preprocessors),
        "nbgrader.preprocessors.getgrades.GetGrades",
        "autograd_course.feedback.RemoveHiddenTestLines",
        "autograd_course.feedback.StudentContentAsText",
        "nbgrader.preprocessors.clearhiddentests.ClearHiddenTests",
        "autograd_course.feedback.ExplainFailures",
    ),
    "autograd_course.feedback.PageStyle",
]
# Hidden-test lines shorter than this are too common to remove from other text (whitespace runs count as one).
c.RemoveHiddenTestLines.min_length = 16
# nbconvert's HTML exporter (feedback pages, and formgrader's view of a submission) drops scripts and unsafe HTML
# from outputs, even if a notebook arrives with them.
c.HTMLExporter.sanitize_html = True
# The formgrader's template renders markdown cells with raw HTML kept, which sanitize_html does not reach: there,
# the student's markdown and raw cells are shown as text (autograd_course/formgrade.py). Feedback pages do this
# through their own preprocessors, above.
c.HTMLExporter.preprocessors = ["autograd_course.formgrade.StudentTextInFormgrader"]
# Seconds `autograd-course grade` gives one student's feedback pages; past it the rendering is killed and the
# student gets a page per notebook with the scores only (noted in grades.csv).
c.FeedbackLimits.timeout = 60

# --- grades.csv ------------------------------------------------------------------------------------
# `nbgrader export` writes the course's grades.csv (the contract's columns), the same file `autograd-course grade`
# and `autograd-course report` write (autograd_course/export.py).
c.ExportApp.plugin_class = "autograd_course.export.GradesCsvExport"
