"""The course on disk: where things live, and the configuration in grader_config.py."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from traitlets import Integer, Unicode
from traitlets.config import Config, Configurable, PyFileConfigLoader
from traitlets.config.loader import ConfigFileNotFound

CONFIG_FILE = "grader_config.py"


class CourseError(Exception):
    """A problem the user can fix; its message says what and where."""


class CourseSettings(Configurable):
    """Course-level settings that nbgrader has no trait for."""

    assignment_id = Unicode("autograd_basics", help="The one assignment of the course.").tag(config=True)
    total_points = Integer(40, help="Points the assignment is worth in all; `check` holds the notebooks to it.").tag(
        config=True
    )


def ensure_tools_on_path() -> None:
    """nbgrader runs `alembic` and Jupyter kernels by name: make this interpreter's scripts findable."""
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


@dataclass(frozen=True)
class Delimiters:
    begin_solution: str
    end_solution: str
    begin_hidden: str
    end_hidden: str


@dataclass(frozen=True)
class Course:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike = ".") -> Course:
        root = Path(root).resolve()
        if not (root / CONFIG_FILE).is_file():
            raise CourseError(f"{root} is not a course root: it has no {CONFIG_FILE}")
        return cls(root)

    @cached_property
    def config(self) -> Config:
        try:
            return PyFileConfigLoader(CONFIG_FILE, path=str(self.root)).load_config()
        except ConfigFileNotFound as error:
            raise CourseError(f"cannot read {self.root / CONFIG_FILE}: {error}") from error
        except Exception as error:  # the file is Python: any error in it is the user's to fix
            raise CourseError(f"{self.root / CONFIG_FILE} failed to load: {error!r}") from error

    @cached_property
    def settings(self) -> CourseSettings:
        return CourseSettings(config=self.config)

    @property
    def assignment_id(self) -> str:
        return self.settings.assignment_id

    # Where things are is nbgrader's to say (CourseDirectory: root, directories, database); these are its answers.
    @cached_property
    def coursedir(self):
        from nbgrader.coursedir import CourseDirectory

        return CourseDirectory(config=self.nbgrader_config())

    def _step(self, directory: str, student: str = ".", assignment: str = ".") -> Path:
        return Path(os.path.normpath(self.coursedir.format_path(directory, student, assignment)))

    @property
    def source_dir(self) -> Path:
        return self._step(self.coursedir.source_directory, ".", self.assignment_id)

    @property
    def release_dir(self) -> Path:
        return self._step(self.coursedir.release_directory, ".", self.assignment_id)

    @property
    def submitted_dir(self) -> Path:
        return self._step(self.coursedir.submitted_directory)

    @property
    def autograded_dir(self) -> Path:
        return self._step(self.coursedir.autograded_directory)

    @property
    def feedback_dir(self) -> Path:
        return self._step(self.coursedir.feedback_directory)

    @property
    def grades_csv(self) -> Path:
        return self.root / "grades.csv"  # where `nbgrader export` writes it

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    @property
    def course_id(self) -> str:
        return self.coursedir.course_id

    @property
    def gradebook(self) -> Path | None:
        """The gradebook's file, when it is the default SQLite database (or any SQLite file)."""
        url = self.db_url
        return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None

    @property
    def run_logs_dir(self) -> Path:
        """Each student's nbgrader log and record from the last `autograd-course grade` (results.RunRecord)."""
        return self.root / "logs" / self.assignment_id

    @cached_property
    def delimiters(self) -> Delimiters:
        """The solution and hidden-test delimiters, as nbgrader's ClearSolutions and ClearHiddenTests are set."""
        from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

        config = self.nbgrader_config()
        solutions, hidden = ClearSolutions(config=config), ClearHiddenTests(config=config)
        return Delimiters(
            solutions.begin_solution_delimeter, solutions.end_solution_delimeter,
            hidden.begin_test_delimeter, hidden.end_test_delimeter,
        )

    @property
    def notebook_ids(self) -> list[str]:
        ids = sorted(path.stem for path in self.source_dir.glob("*.ipynb"))
        if not ids:
            raise CourseError(f"no notebooks in {self.source_dir}")
        return ids

    def nbgrader_config(self, overrides: dict[str, object] | None = None) -> Config:
        """grader_config.py with this course's root, plus ``{"Section.trait": value}`` overrides."""
        config = Config()
        config.merge(self.config)
        config.CourseDirectory.root = str(self.root)
        for key, value in (overrides or {}).items():
            section, name = key.split(".")
            config[section][name] = value
        return config

    def nbgrader_api(self, overrides: dict[str, object] | None = None):
        """An in-process nbgrader API on this course, configured by grader_config.py."""
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        ensure_tools_on_path()
        config = self.nbgrader_config(overrides)
        coursedir = CourseDirectory(config=config)
        return NbGraderAPI(coursedir=coursedir, config=config)
