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

# Student code runs in a warm, sandboxed runner instead of a Jupyter kernel (autograd_course/executor.py), and
# a submission's graded cells are put back as released before nbgrader's own checks (integrity.py). Plain
# `nbgrader autograde` in the course root grades the same way.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "autograd_course.integrity.RestoreGradedCells",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "autograd_course.executor.SandboxedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.SandboxedExecute.memory_limit_mb = 2048
c.SandboxedExecute.output_limit = 100_000

# Feedback shows each part's score and the failed checks' messages, never the hidden tests' source.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "autograd_course.feedback.ExplainFailures",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
