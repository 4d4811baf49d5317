# nbgrader always reads this file name; the course's configuration lives in grader_config.py.
load_subconfig("grader_config.py")  # noqa: F821
