"""grades.csv as an nbgrader export plugin, so that `nbgrader export` writes the same file as `autograd-course grade`.

Chosen in grader_config.py (``c.ExportApp.plugin_class``). nbgrader opens the gradebook at the course's
`CourseDirectory.db_url` and hands it over; the rows come from results.py, with the class read from submitted/.
"""

from __future__ import annotations

from pathlib import Path

from nbgrader.coursedir import CourseDirectory
from nbgrader.plugins import ExportPlugin

from .course import Course
from .results import find_students, read_class, write_grades_csv


class GradesCsvExport(ExportPlugin):
    def export(self, gradebook) -> None:
        course = Course.at(CourseDirectory(config=self.config).root)
        students = find_students(course)
        if self.student:
            students = [student for student in students if student in self.student]
        results = read_class(course, students, gradebook)
        destination = Path(self.to) if self.to else course.grades_csv
        write_grades_csv(course, results, destination if destination.is_absolute() else course.root / destination)
        self.log.info("wrote %s", destination)
