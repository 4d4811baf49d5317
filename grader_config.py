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
