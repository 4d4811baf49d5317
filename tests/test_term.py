"""A whole term through nbgrader's exchange, with two real unix students, as on a shared JupyterHub.

The test (run as root) makes a scratch folder that every user can reach, an exchange folder in it, and two unix
users with their own homes there; it removes the users and the folder at the end. The instructor is root, with
a Jupyter configuration of its own that names the exchange (as /etc/jupyter/nbgrader_config.py would on a hub);
each student's ~/.jupyter/nbgrader_config.py names the exchange and the course, and every student command runs
as that user (runuser), with that user's home and nothing of root's environment.

The term, command by command (the README's "A term on a JupyterHub"):

    instructor  autograd-course release; nbgrader release_assignment autograd_basics
    students    nbgrader fetch_assignment autograd_basics; (answer); nbgrader submit autograd_basics
    instructor  nbgrader collect autograd_basics; autograd-course grade; nbgrader release_feedback autograd_basics
    students    nbgrader fetch_feedback autograd_basics

`right` hands in the solutions, `wrong` two mistakes from the catalog. Each ends with feedback pages for the
submission they made, with the gradebook's scores, the failing checks' hints, and no hidden test. Then `wrong`
fixes the answers and submits again; `nbgrader collect --update` replaces the submission, `grade` grades it
again, and the new feedback reaches the student.
"""

from __future__ import annotations

import csv
import html
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import nbgrader
import pytest

from autograd_course.catalog import by_name, solved

from course_helpers import NOTEBOOKS, copy_course, hidden_lines, marks
from jupyter_helpers import isolated_env

BIN = Path(sys.executable).parent
ASSIGNMENT = "autograd_basics"
COURSE_ID = "autograd-basics"  # grader_config.py's c.CourseDirectory.course_id
MISTAKES = [by_name("q6 forgot requires_grad on x"), by_name("q9 forgot to reset between backward calls")]
COMMAND_TIMEOUT = 600

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="creating unix users needs root (CI runs as root)")]


# ------------------------------------------------------------------------------------------ running things
def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on a timeout the whole group is stopped, by its id."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"{' '.join(command)} did not finish in {COMMAND_TIMEOUT} s:\n{stdout}\n{stderr}") from None
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{stdout}\n{stderr}"
    assert "| ERROR]" not in stderr and "| CRITICAL]" not in stderr, stderr
    return result


# ------------------------------------------------------------------------------------------ the students' Python
#: what the students' environment leaves out of the course's: they only run nbgrader's exchange commands here
NOT_FOR_STUDENTS = ("torch", "functorch", "torchgen", "nvidia", "triton", "autograd_course", "__editable__")


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def students_python(base: Path) -> Path:
    """A Python environment the students can run, in the scratch folder: the system's Python with this
    environment's packages (hard links where possible). This environment itself may live where other users
    cannot go (its interpreter under root's home, say), as it cannot on a real hub."""
    here = sys.version_info[:2]
    system = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    assert system, "no system python3 for the students"
    version = subprocess.run([system, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert tuple(map(int, version)) == here, f"{system} is Python {'.'.join(version)}, this environment {here}"
    folder = base / "students-env"
    subprocess.run([system, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True, timeout=120)
    target = folder / "lib" / f"python{here[0]}.{here[1]}" / "site-packages"
    source = Path(nbgrader.__file__).resolve().parent.parent
    for entry in source.iterdir():
        if entry.name.startswith(NOT_FOR_STUDENTS):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(str(entry), str(target / entry.name))
    return folder / "bin" / "python"


@dataclass
class Student:
    name: str
    home: Path
    python: Path

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        """A command as this user, in their home, with an environment of their own (runuser, as root)."""
        env = [f"HOME={self.home}", f"USER={self.name}", f"LOGNAME={self.name}",
               f"PATH={self.python.parent}:/usr/bin:/bin", "LANG=C.UTF-8"]
        command = ["runuser", "-u", self.name, "--", "env", "-i", *env, *args]
        if stdin is None:
            return run(command, self.home, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        result = subprocess.run(command, cwd=self.home, input=stdin, capture_output=True, timeout=COMMAND_TIMEOUT)
        assert result.returncode == 0, result.stderr
        return result

    def nbgrader(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(str(self.python), "-m", "nbgrader", *args)

    def write(self, path: Path, data: bytes) -> None:
        """Write a file as the student does: their own process, their own file."""
        self.run(str(self.python), "-c", "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())",
                 str(path), stdin=data)


class Instructor:
    """root in the course root, with a Jupyter configuration of its own that names the exchange."""

    def __init__(self, course_root: Path, home: Path, exchange: Path) -> None:
        self.root = course_root
        self.env = isolated_env(home)
        self.env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        (Path(self.env["JUPYTER_CONFIG_DIR"]) / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\n"
        )

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return run(list(args), self.root, self.env)

    def nbgrader(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "nbgrader"), *args)

    def autograd_course(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "autograd-course"), *args)

    def grades(self) -> dict[str, dict[str, str]]:
        with open(self.root / "grades.csv", newline="", encoding="utf-8") as handle:
            return {row["student_id"]: row for row in csv.DictReader(handle)}


# ------------------------------------------------------------------------------------------ users
def add_user(name: str, home: Path, python: Path) -> Student:
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", "--user-group", name],
                   check=True, capture_output=True, timeout=60)
    return Student(name, home, python)


def remove_user(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True, timeout=60)
    if subprocess.run(["getent", "group", name], capture_output=True).returncode == 0:
        subprocess.run(["groupdel", name], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A scratch folder every user can reach, holding the exchange and the students' homes; two students."""
    base = Path(tempfile.mkdtemp(prefix="autograd-course-term-"))
    base.chmod(0o755)
    suffix = secrets.token_hex(3)
    names = {"right": f"right{suffix}", "wrong": f"wrong{suffix}"}
    created = []
    try:
        (base / "home").mkdir(mode=0o755)
        python = students_python(base)
        students = {}
        for role, name in names.items():
            students[role] = add_user(name, base / "home" / name, python)
            created.append(name)
        exchange = base / "exchange"  # release_assignment creates it, with the modes nbgrader wants
        for student in students.values():
            config = student.home / ".jupyter" / "nbgrader_config.py"
            student.run("mkdir", "-p", str(config.parent))
            student.write(config, (f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\n"
                                   f"c.CourseDirectory.course_id = {COURSE_ID!r}\n").encode())
        for student in students.values():
            student.run(str(python), "-c", "import nbgrader")
        course = copy_course(tmp_path_factory.mktemp("term") / "course")
        instructor = Instructor(course.root, tmp_path_factory.mktemp("instructor-home"), exchange)
        yield {"base": base, "exchange": exchange, "students": students, "instructor": instructor, "course": course}
    finally:
        for name in created:
            remove_user(name)
        shutil.rmtree(base, ignore_errors=True)
        for name in created:
            assert subprocess.run(["id", name], capture_output=True).returncode != 0, f"user {name} is left behind"


# ------------------------------------------------------------------------------------------ feedback pages
def page_text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def error_outputs(path: Path) -> list[str]:
    """The error outputs a feedback page shows (a failed check's message), as text."""
    blocks = re.findall(r'class="[^"]*\boutput_error\b[^"]*"[^>]*>(.*?)</div>', path.read_text(encoding="utf-8"), re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", block)) for block in blocks]


def notebook_score(text: str, notebook_id: str) -> float:
    match = re.search(rf"{notebook_id} \(Score: ([\d.]+) / 10(?:\.0)?\)", text)
    assert match, f"no score for {notebook_id} on its feedback page"
    return float(match.group(1))


def feedback_folder(student: Student, timestamp: str) -> Path:
    """Where fetch_feedback puts the pages of the submission made at ``timestamp``."""
    return student.home / ASSIGNMENT / "feedback" / timestamp


def check_feedback(hub, student: Student, timestamp: str, expected: dict[str, float], hints: list[str]) -> None:
    course = hub["course"]
    folder = feedback_folder(student, timestamp)
    assert sorted(path.name for path in folder.glob("*.html")) == [f"{n}.html" for n in NOTEBOOKS], folder
    texts = {}
    for notebook_id in NOTEBOOKS:
        path = folder / f"{notebook_id}.html"
        assert path.stat().st_uid == student.uid, f"{path} is not the student's own file"
        text = texts[notebook_id] = page_text(path)
        assert notebook_score(text, notebook_id) == expected[notebook_id], (student.name, notebook_id)
        assert "HIDDEN TESTS" not in text
        page_lines = {line.strip() for line in text.splitlines()}
        shown = [line for line in hidden_lines(course, notebook_id) if line in page_lines]
        assert not shown, f"{path} shows hidden test code: {shown[:3]}"
        assert hidden_lines(course, notebook_id), f"{notebook_id} should have hidden tests to hide"
    errors = "\n".join(error for notebook_id in NOTEBOOKS for error in error_outputs(folder / f"{notebook_id}.html"))
    for hint in hints:
        assert hint in errors, f"{student.name}'s feedback does not show the hint {hint!r} as a failure:\n{errors}"
    if not hints:
        assert errors == "", f"{student.name} passed every check, but the feedback shows failures:\n{errors}"
    # The visible checks are on the page, so an empty page could not pass for one without hidden tests.
    assert "did you create x with requires_grad=True?" in texts["q6_basic_gradients"]


def submission_timestamp(hub, student: Student) -> str:
    return (hub["course"].submitted_dir / student.name / ASSIGNMENT / "timestamp.txt").read_text().strip()


# ------------------------------------------------------------------------------------------ the term
@pytest.fixture(scope="module")
def term(hub):
    instructor, students, course = hub["instructor"], hub["students"], hub["course"]
    steps = {}

    instructor.autograd_course("release")
    instructor.nbgrader("release_assignment", ASSIGNMENT)

    wrong_answers = {mistake.notebook: mistake.build(course) for mistake in MISTAKES}
    for role, student in students.items():
        student.nbgrader("fetch_assignment", ASSIGNMENT)
        folder = student.home / ASSIGNMENT
        for notebook_id in NOTEBOOKS:
            fetched = folder / f"{notebook_id}.ipynb"
            assert fetched.stat().st_uid == student.uid
            assert fetched.read_bytes() == (course.release_dir / fetched.name).read_bytes()
            answer = wrong_answers.get(notebook_id) if role == "wrong" else None
            answer = answer or solved(course, notebook_id)
            student.write(fetched, nbformat.writes(answer).encode())
        student.nbgrader("submit", ASSIGNMENT)

    instructor.nbgrader("collect", ASSIGNMENT)
    for student in students.values():
        collected = course.submitted_dir / student.name / ASSIGNMENT
        assert (collected / "submission_secret.txt").is_file() and (collected / "timestamp.txt").is_file()
    steps["first_timestamps"] = {role: submission_timestamp(hub, s) for role, s in students.items()}
    steps["first_grade"] = instructor.autograd_course("grade", "--jobs", "2")
    steps["first_grades"] = instructor.grades()
    steps["first_release"] = instructor.nbgrader("release_feedback", ASSIGNMENT)
    for student in students.values():
        student.nbgrader("fetch_feedback", ASSIGNMENT)

    # `wrong` fixes everything and hands in again; collect --update takes the newer submission.
    wrong = students["wrong"]
    time.sleep(1.1)  # a later timestamp than the first submission, to the second
    for notebook_id in NOTEBOOKS:
        wrong.write(wrong.home / ASSIGNMENT / f"{notebook_id}.ipynb", nbformat.writes(solved(course, notebook_id)).encode())
    wrong.nbgrader("submit", ASSIGNMENT)
    steps["update"] = instructor.nbgrader("collect", "--update", ASSIGNMENT)
    steps["second_timestamp"] = submission_timestamp(hub, wrong)
    steps["second_grade"] = instructor.autograd_course("grade", "--jobs", "2")
    steps["second_grades"] = instructor.grades()
    instructor.nbgrader("release_feedback", ASSIGNMENT)
    wrong.nbgrader("fetch_feedback", ASSIGNMENT)
    return steps


def expected_points(role: str, course) -> dict[str, float]:
    points = dict.fromkeys(NOTEBOOKS, 10.0)
    if role == "wrong":
        for mistake in MISTAKES:
            points[mistake.notebook] = sum(mistake.expected_points(course).values())
    return points


def test_the_students_are_real_users_with_homes_of_their_own(hub):
    for student in hub["students"].values():
        entry = pwd.getpwnam(student.name)
        assert Path(entry.pw_dir) == student.home and entry.pw_uid not in (0, os.geteuid())
        assert student.home.stat().st_uid == entry.pw_uid
    uids = {student.uid for student in hub["students"].values()}
    assert len(uids) == 2


def test_collect_took_each_students_own_submission(hub, term):
    course = hub["course"]
    inbound = hub["exchange"] / COURSE_ID / "inbound"
    assert stat.S_IMODE(inbound.stat().st_mode) & 0o777 == 0o733  # students write there and cannot list it
    for student in hub["students"].values():
        owners = {path.stat().st_uid for path in inbound.glob(f"{student.name}+{ASSIGNMENT}+*/*.ipynb")}
        assert owners == {student.uid}, (student.name, owners)
        assert (course.submitted_dir / student.name / ASSIGNMENT / "q6_basic_gradients.ipynb").is_file()


def test_grades_csv_after_the_first_round(hub, term):
    course, students = hub["course"], hub["students"]
    rows = term["first_grades"]
    assert sorted(rows) == sorted(s.name for s in students.values())
    for role, student in students.items():
        row, expected = rows[student.name], expected_points(role, course)
        assert [float(row[n]) for n in NOTEBOOKS] == [expected[n] for n in NOTEBOOKS], row
        assert float(row["score"]) == sum(expected.values()) and row["status"] == "ok", row
    assert float(rows[students["wrong"].name]["score"]) < 40


def test_release_feedback_released_every_page(hub, term):
    released = list((hub["exchange"] / COURSE_ID / "feedback").glob("*.html"))
    assert len(released) >= 2 * len(NOTEBOOKS), released  # 8 after the first round, 12 after the second
    assert "Releasing feedback for student" in term["first_release"].stderr


def test_each_student_fetched_their_own_feedback(hub, term):
    course = hub["course"]
    for role, student in hub["students"].items():
        hints = [hint for mistake in MISTAKES for hint in mistake.hints.values()] if role == "wrong" else []
        check_feedback(hub, student, term["first_timestamps"][role], expected_points(role, course), hints)
    right = hub["students"]["right"]
    folders = list((right.home / ASSIGNMENT / "feedback").iterdir())
    assert [folder.name for folder in folders] == [term["first_timestamps"]["right"]]


def test_a_resubmission_collected_with_update_is_graded_again(hub, term):
    wrong = hub["students"]["wrong"]
    assert term["second_timestamp"] > term["first_timestamps"]["wrong"]
    assert f"Updating submission: {wrong.name} {ASSIGNMENT}" in term["update"].stderr, term["update"].stderr
    assert f"No newer submission to collect: {hub['students']['right'].name}" in term["update"].stderr
    before, after = term["first_grades"], term["second_grades"]
    assert float(before[wrong.name]["score"]) < 40
    assert (after[wrong.name]["score"], after[wrong.name]["status"]) == (marks(), "ok")
    right = hub["students"]["right"].name
    assert after[right] == before[right]
    # the new feedback is in a folder of its own, named for the new submission; the old one is still there
    check_feedback(hub, wrong, term["second_timestamp"], expected_points("right", hub["course"]), [])
    assert feedback_folder(wrong, term["first_timestamps"]["wrong"]).is_dir()
