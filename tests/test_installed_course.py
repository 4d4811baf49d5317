"""The instructor's side from an environment installed elsewhere: plain nbgrader and the formgrader's buttons.

On a shared JupyterHub the instructor's environment is installed once, from some checkout of this repository,
usually with a plain (non-editable) ``pip install``, while the course root is another checkout. nbgrader puts
the working folder first on sys.path, so in the course root it imports the grader from the course root's
``autograd_course/``, not from the environment. The helper processes the grader starts (the judge, and in the
sandbox the zygote and the kernels) must run that same code: autograd_course/launch.py starts them from the
folder the package was imported from, and the sandbox mounts that folder.

Here:

- an environment is made in a scratch folder with ``pip install --no-deps --no-build-isolation <checkout>``
  (not editable) of a copy of this checkout, with the test environment's other packages linked in (building
  torch and Jupyter again would take minutes and test nothing of ours);
- the course root is another copy of the checkout, with its own ``autograd_course/``;
- both copies of the package are marked: each process that imports one writes its pid and the file it imported
  to a log, so the test sees which code every process ran (nbgrader, the formgrader's server, the judge);
- plain ``nbgrader autograde`` runs in the course root, and in a course root without a package of its own;
- the formgrader runs from that environment (``jupyter server`` with nbgrader's extensions), and headless
  Chromium clicks its Autograde, Generate Feedback and Release Feedback buttons, and saves a manual grade;
  `autograd-course report` then rewrites grades.csv with it;
- when the sandbox cannot start (bubblewrap missing, or failing), plain ``nbgrader autograde --force`` and the
  formgrader's Autograde button stop with a clear message and leave every earlier result as it was.

Screenshots go to ``<repo root>/test-artifacts/formgrader/``.
"""

from __future__ import annotations

import csv
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.utils import notebook_hash

from autograd_course.catalog import by_name, solved

from course_helpers import NOTEBOOKS, REPO, copy_course, marks, submit
from jupyter_helpers import Server, isolated_env, running_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ASSIGNMENT = "autograd_basics"
COURSE_ID = "autograd-basics"
HERE = Path(sys.prefix)  # the test environment
SITE = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
COMMAND_TIMEOUT = 600
MISTAKE = by_name("q6 forgot requires_grad on x")  # loses q6_gradient's 4 points
ARTIFACTS_DIR = REPO / "test-artifacts" / "formgrader"
CHROMIUM = os.environ.get("AUTOGRAD_COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
UI_TIMEOUT_MS = 30_000
BUTTON_TIMEOUT_MS = 300_000  # an Autograde click starts the judge and a sandbox in the server process

MARKER = '''
# test marker (tests/test_installed_course.py): which copy of the package this process imported
import os as _os
if _os.environ.get("AUTOGRAD_COURSE_IMPORT_LOG"):
    with open(_os.environ["AUTOGRAD_COURSE_IMPORT_LOG"], "a") as _log:
        _log.write(f"{_os.getpid()} {__file__}\\n")
del _os
'''


# ------------------------------------------------------------------------------------------ the environment
def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _link_tree(source: Path, destination: Path) -> None:
    shutil.copytree(source, destination, copy_function=_link_or_copy, symlinks=True, dirs_exist_ok=True)


def copy_package(destination: Path) -> Path:
    """This checkout's package, marked, at ``destination/autograd_course``."""
    target = destination / "autograd_course"
    shutil.copytree(REPO / "autograd_course", target, ignore=shutil.ignore_patterns("__pycache__"))
    with open(target / "__init__.py", "a") as handle:
        handle.write(MARKER)
    return target


def build_environment(folder: Path, checkout: Path) -> Path:
    """A virtual environment at ``folder`` with ``checkout`` installed by a non-editable pip install, and the
    test environment's other packages, scripts and Jupyter files; returns its bin/."""
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True,
                   timeout=120)
    for entry in (HERE / SITE).iterdir():
        if entry.name.startswith(("autograd_course", "__editable__")):
            continue
        if entry.is_dir():
            _link_tree(entry, folder / SITE / entry.name)
        else:
            _link_or_copy(str(entry), str(folder / SITE / entry.name))
    for shared in ("etc/jupyter", "share/jupyter"):
        if (HERE / shared).is_dir():
            _link_tree(HERE / shared, folder / shared)
    # Console scripts, as pip writes them: the same, with this environment's interpreter.
    for script in (HERE / "bin").iterdir():
        target = folder / "bin" / script.name
        if script.is_symlink() or not script.is_file() or target.exists() or script.name == "autograd-course":
            continue
        head = script.read_bytes()[:256]
        if not head.startswith(b"#!") or str(HERE).encode() not in head.split(b"\n", 1)[0]:
            continue
        lines = script.read_bytes().split(b"\n", 1)
        target.write_bytes(b"#!" + str(folder / "bin" / "python").encode() + b"\n" + lines[1])
        target.chmod(0o755)
    subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", str(checkout)],
        check=True, capture_output=True, timeout=COMMAND_TIMEOUT, cwd=folder,
    )
    return folder / "bin"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("installed")
    checkout = scratch / "checkout"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, checkout / name)
    copy_package(checkout)
    bin_dir = build_environment(scratch / "env", checkout)
    installed = subprocess.run(
        [str(bin_dir / "python"), "-c", "import autograd_course; print(autograd_course.__file__)"],
        capture_output=True, text=True, check=True, cwd=scratch,
    ).stdout.strip()
    site = (scratch / "env" / SITE).resolve()
    assert Path(installed).resolve() == site / "autograd_course" / "__init__.py", installed
    assert not list(site.glob("__editable__*")), "the course should not be installed in editable mode"
    home = scratch / "instructor-home"
    home.mkdir()
    exchange = scratch / "exchange"  # made by the hub's administrator, writable by all (nbgrader's docs)
    exchange.mkdir()
    exchange.chmod(0o777)
    return {"bin": bin_dir, "site": site, "home": home, "exchange": exchange, "scratch": scratch}


def instructor_env(env, log: Path, path: str | None = None) -> dict[str, str]:
    """The instructor's environment: their Jupyter configuration names the exchange; the import log is on."""
    home = env["home"] / secrets.token_hex(4)
    variables = isolated_env(home)
    (Path(variables["JUPYTER_CONFIG_DIR"]) / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.Exchange.root = {str(env['exchange'])!r}\n"
    )
    variables["PATH"] = path or f"{env['bin']}{os.pathsep}/usr/bin{os.pathsep}/bin"
    variables["AUTOGRAD_COURSE_IMPORT_LOG"] = str(log)
    return variables


def nbgrader(env, root: Path, log: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(env["bin"] / "nbgrader"), *args], cwd=root, env=instructor_env(env, log, path),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def imports(log: Path) -> dict[int, str]:
    """pid -> the package file that process imported."""
    seen: dict[int, str] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, path = line.split(" ", 1)
        assert seen.get(int(pid), path) == path, f"process {pid} imported two copies of the package"
        seen[int(pid)] = path
    return seen


def assert_ran(log: Path, package: Path, processes: int = 2) -> None:
    """Every process that imported the grader imported ``package`` (nbgrader's own and the judge, at least)."""
    seen = imports(log)
    assert len(seen) >= processes, f"expected at least {processes} processes in {log}: {seen}"
    assert set(seen.values()) == {str(package / "__init__.py")}, seen


# ------------------------------------------------------------------------------------------ the course
def collected(course, student: str, notebooks: dict) -> None:
    """A submission as `nbgrader collect` leaves it: the notebooks, timestamp.txt and submission_secret.txt."""
    folder = submit(course, student, notebooks)
    (folder / "timestamp.txt").write_text("2026-03-01 10:00:00.000000 UTC")
    (folder / "submission_secret.txt").write_text(secrets.token_hex(16))


@pytest.fixture(scope="module")
def course_b(tmp_path_factory):
    """A course root that is another checkout: the course files and a package of its own."""
    course = copy_course(tmp_path_factory.mktemp("checkout-b") / "course")
    copy_package(course.root)
    collected(course, "ada", {n: solved(course, n) for n in NOTEBOOKS})
    collected(course, "cy", {**{n: solved(course, n) for n in NOTEBOOKS}, MISTAKE.notebook: MISTAKE.build(course)})
    return course


def autograded_state(course) -> dict[str, tuple[bytes, int]]:
    """Every file under autograded/: its bytes and modification time."""
    return {str(path.relative_to(course.autograded_dir)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(course.autograded_dir.rglob("*")) if path.is_file()}


def gradebook_state(course) -> dict:
    with Gradebook(f"sqlite:///{course.gradebook}", COURSE_ID) as gradebook:
        return {(grade.student.id, grade.notebook.name, grade.name): (grade.auto_score, grade.manual_score)
                for submission in gradebook.find_assignment(ASSIGNMENT).submissions
                for notebook in submission.notebooks for grade in notebook.grades}


def notebook_scores(course, student: str) -> dict[str, float]:
    with Gradebook(f"sqlite:///{course.gradebook}", COURSE_ID) as gradebook:
        submission = gradebook.find_submission(ASSIGNMENT, student)
        return {notebook.name: float(notebook.score) for notebook in submission.notebooks}


# ------------------------------------------------------------------------------------------ plain nbgrader
@pytest.fixture(scope="module")
def plain(env, course_b, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    ok(nbgrader(env, course_b.root, logs / "generate.log", "generate_assignment", ASSIGNMENT, "--force"))
    result = ok(nbgrader(env, course_b.root, logs / "autograde.log", "autograde", ASSIGNMENT, "--student", "ada"))
    return {"log": logs / "autograde.log", "result": result}


def test_plain_nbgrader_autograde_runs_the_course_roots_package(plain, course_b, env):
    assert notebook_scores(course_b, "ada") == dict.fromkeys(NOTEBOOKS, 10.0)
    # nbgrader imported the grader from the course root, and the judge it started ran that same copy, not the
    # environment's; the sandbox mounts the judge's copy (sandbox/bwrap.py) and checks the zygote loaded it
    assert_ran(plain["log"], course_b.root / "autograd_course")
    assert str(env["site"]) not in plain["log"].read_text()


def test_plain_nbgrader_in_a_course_root_without_a_package_runs_the_installed_one(env, tmp_path):
    course = copy_course(tmp_path / "course")
    assert not (course.root / "autograd_course").exists()
    submit(course, "ada", {n: solved(course, n) for n in NOTEBOOKS})
    ok(nbgrader(env, course.root, tmp_path / "generate.log", "generate_assignment", ASSIGNMENT, "--force"))
    ok(nbgrader(env, course.root, tmp_path / "autograde.log", "autograde", ASSIGNMENT))
    assert notebook_scores(course, "ada") == dict.fromkeys(NOTEBOOKS, 10.0)
    assert_ran(tmp_path / "autograde.log", env["site"] / "autograd_course")


# ------------------------------------------------------------------------------------------ no sandbox
def failing_bwrap(folder: Path) -> Path:
    """A bubblewrap that is installed but cannot create a sandbox."""
    folder.mkdir(exist_ok=True)
    stub = folder / "bwrap"
    stub.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    stub.chmod(0o755)
    return folder


# ------------------------------------------------------------------------------------------ the formgrader
@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"Playwright's Python package is missing ({error}); `make test` installs it", pytrace=False)
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"Chromium is missing: no executable at {CHROMIUM}; `make test` installs it", pytrace=False)
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS_DIR.glob("*.png"):
        old.unlink()
    manager = sync_playwright()
    playwright = manager.start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


class Formgrader(Server):
    def page_url(self, path: str) -> str:
        return f"{self.url}/formgrader/{path}?token={self.token}"


def formgrader(env, course, log: Path, path: str | None = None):
    """nbgrader's formgrader (a Jupyter server with nbgrader's extensions) from the installed environment,
    started in the course root."""
    variables = instructor_env(env, log, path)
    return running_server("server", course.root, variables, server_class=Formgrader, python=env["bin"] / "python",
                          extra_args=["--ServerApp.open_browser=False"])


def open_page(browser, server: Formgrader, path: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    # Log in first, at the server's root: the formgrader's pages set the login cookie for their own path only,
    # and the calls they make to /formgrader/api would then be sent to the login page.
    page.goto(f"{server.url}/api/status?token={server.token}")
    page.goto(server.page_url(path))
    return page


def submission_row(page, student: str):
    row = page.locator("#main-table tr", has=page.locator("td.student-id", has_text=re.compile(rf"^{student}$")))
    try:
        row.wait_for()
    except Exception:
        page.screenshot(path=str(ARTIFACTS_DIR / f"failure-no-row-{student}.png"))
        raise
    return row


def click_and_read_modal(page, button, name: str) -> tuple[str, str]:
    """Click a formgrader button and wait for its result dialog; return the dialog's id and text."""
    button.click()
    modal = page.locator("#success-modal, #error-modal").last
    modal.wait_for(state="visible", timeout=BUTTON_TIMEOUT_MS)
    page.wait_for_function("(modal) => getComputedStyle(modal).opacity === '1'", arg=modal.element_handle())
    page.screenshot(path=str(ARTIFACTS_DIR / f"{name}.png"))
    kind, text = modal.get_attribute("id"), modal.inner_text()
    modal.locator(".modal-footer button").first.click()
    modal.wait_for(state="detached")
    return kind, text


@pytest.fixture(scope="module")
def without_sandbox(env, course_b, plain, browser, tmp_path_factory):
    """The formgrader started where bubblewrap fails; its Autograde button clicked for ada, graded before."""
    logs = tmp_path_factory.mktemp("no-sandbox")
    before = (autograded_state(course_b), gradebook_state(course_b))
    path = os.pathsep.join([str(failing_bwrap(logs / "stub")), str(env["bin"]), "/usr/bin", "/bin"])
    with formgrader(env, course_b, logs / "imports.log", path) as server:
        page = open_page(browser, server, f"manage_submissions/{ASSIGNMENT}")
        try:
            row = submission_row(page, "ada")
            outcome = click_and_read_modal(page, row.locator("td.autograde a"), "01-autograde-without-sandbox")
        finally:
            page.context.close()
    return {"before": before, "after": (autograded_state(course_b), gradebook_state(course_b)), "outcome": outcome}


def test_formgrader_autograde_without_a_sandbox_keeps_the_results(without_sandbox):
    kind, text = without_sandbox["outcome"]
    assert kind == "error-modal", text
    assert "The grading sandbox cannot start, so nothing was graded and earlier results are kept" in text, text
    assert "Removing" not in text, text
    assert without_sandbox["after"] == without_sandbox["before"]
    assert any(name.startswith("ada/") for name in without_sandbox["before"][0])


@pytest.fixture(scope="module")
def buttons(env, course_b, without_sandbox, browser, tmp_path_factory):
    """The formgrader, working: Autograde for cy (not graded yet), then Generate Feedback and Release Feedback
    for the assignment, then a manual grade for cy's q6_gradient; then `autograd-course report`."""
    logs = tmp_path_factory.mktemp("formgrader")
    steps = {"log": logs / "imports.log"}
    with formgrader(env, course_b, steps["log"]) as server:
        page = open_page(browser, server, f"manage_submissions/{ASSIGNMENT}")
        try:
            row = submission_row(page, "cy")
            steps["cy_before"] = row.locator("td.status").inner_text()
            steps["autograde"] = click_and_read_modal(page, row.locator("td.autograde a"), "02-autograde")
            row = submission_row(page, "cy")
            page.wait_for_function("(row) => row.querySelector('td.score').textContent.includes('/')",
                                   arg=row.element_handle())
            steps["cy_after"] = (row.locator("td.status").inner_text(), row.locator("td.score").inner_text())

            page.goto(server.page_url("manage_assignments"))
            assignment = page.locator("#main-table tr", has=page.locator("td.name", has_text=ASSIGNMENT))
            assignment.locator("td.generate-feedback a").wait_for()
            steps["generate"] = click_and_read_modal(page, assignment.locator("td.generate-feedback a"),
                                                     "03-generate-feedback")
            assignment.locator("td.release-feedback a").wait_for()
            steps["release"] = click_and_read_modal(page, assignment.locator("td.release-feedback a"),
                                                    "04-release-feedback")

            # Manual grading: cy's q6_gradient, 0 of 4 by the autograder, given 3 by hand.
            listing = server.request("GET", f"/formgrader/api/submitted_notebooks/{ASSIGNMENT}/q6_basic_gradients")
            notebook_id = next(item["id"] for item in listing if item["student"] == "cy")
            page.goto(f"{server.url}/formgrader/submissions/{notebook_id}/?token={server.token}")
            score = page.locator("input.score#q6_gradient")
            score.wait_for()
            # the page's script has loaded the grade when it shows the autograder's score in the box
            page.wait_for_function("(box) => box.getAttribute('placeholder') !== null", arg=score.element_handle())
            steps["placeholder"] = score.get_attribute("placeholder")
            score.fill("3")
            score.press("Tab")  # the page saves a score when the box loses focus
            deadline = time.monotonic() + 30
            while gradebook_state(course_b)[("cy", MISTAKE.notebook, "q6_gradient")][1] != 3.0:
                if time.monotonic() > deadline:
                    page.screenshot(path=str(ARTIFACTS_DIR / "failure-manual-grade.png"))
                    raise AssertionError("the manual grade was not saved")
                time.sleep(0.2)
            page.screenshot(path=str(ARTIFACTS_DIR / "05-manual-grade.png"))
        finally:
            page.context.close()
    steps["report"] = subprocess.run(
        [str(env["bin"] / "autograd-course"), "report"], cwd=course_b.root,
        env=instructor_env(env, logs / "report.log"), capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )
    return steps


def test_formgrader_autograde_button(buttons, course_b):
    assert "needs autograding" in buttons["cy_before"]
    kind, text = buttons["autograde"]
    assert kind == "success-modal", text
    status, score = buttons["cy_after"]
    assert "graded" in status and score.replace(" ", "") == "36/40", buttons["cy_after"]
    expected = dict.fromkeys(NOTEBOOKS, 10.0)
    expected[MISTAKE.notebook] = sum(MISTAKE.expected_points(course_b).values())
    assert expected[MISTAKE.notebook] == 6
    autograded = nbformat.read(course_b.autograded_dir / "cy" / ASSIGNMENT / f"{MISTAKE.notebook}.ipynb", 4)
    assert any(o.get("output_type") == "error" and "requires_grad" in o.get("evalue", "")
               for cell in autograded.cells for o in cell.get("outputs", []))


def test_formgrader_server_and_its_judge_ran_the_course_roots_package(buttons, course_b):
    assert_ran(buttons["log"], course_b.root / "autograd_course")


def test_formgrader_generate_feedback_button(buttons, course_b):
    kind, text = buttons["generate"]
    assert kind == "success-modal", text
    for student in ("ada", "cy"):
        pages = sorted(p.name for p in (course_b.feedback_dir / student / ASSIGNMENT).glob("*.html"))
        assert pages == [f"{n}.html" for n in NOTEBOOKS], (student, pages)
    cy = (course_b.feedback_dir / "cy" / ASSIGNMENT / f"{MISTAKE.notebook}.html").read_text()
    assert "did you create x with requires_grad=True?" in cy and "HIDDEN TESTS" not in cy


def test_formgrader_release_feedback_button(buttons, course_b, env):
    kind, text = buttons["release"]
    assert kind == "success-modal", text
    released = env["exchange"] / COURSE_ID / "feedback"
    for student in ("ada", "cy"):
        secret = (course_b.submitted_dir / student / ASSIGNMENT / "submission_secret.txt").read_text()
        for notebook_id in NOTEBOOKS:
            # where the student's `nbgrader fetch_feedback` looks for it
            page = released / f"{notebook_hash(secret=secret, notebook_id=notebook_id)}.html"
            assert page.read_bytes() == (course_b.feedback_dir / student / ASSIGNMENT / f"{notebook_id}.html").read_bytes()


def test_manual_grade_reaches_grades_csv_through_report(buttons, course_b):
    assert buttons["placeholder"] == "0"  # the autograder's score, shown in the box
    assert gradebook_state(course_b)[("cy", MISTAKE.notebook, "q6_gradient")] == (0.0, 3.0)
    report = ok(buttons["report"])
    assert "grades.csv" in report.stdout
    with open(course_b.grades_csv, newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert (rows["cy"][MISTAKE.notebook], rows["cy"]["score"], rows["cy"]["status"]) == ("9", "39", "ok"), rows["cy"]
    assert (rows["ada"]["score"], rows["ada"]["status"]) == (marks(), "ok")


# ------------------------------------------------------------------------------------------ plain, no sandbox
@pytest.mark.parametrize("how", ["bubblewrap missing", "bubblewrap failing"])
def test_plain_autograde_without_a_sandbox_keeps_the_results(how, env, course_b, buttons, tmp_path):
    before = (autograded_state(course_b), gradebook_state(course_b))
    assert {name.split("/")[0] for name in before[0]} == {"ada", "cy"}
    assert shutil.which("bwrap", path=str(env["bin"])) is None
    path = str(env["bin"]) if how == "bubblewrap missing" else os.pathsep.join(
        [str(failing_bwrap(tmp_path / "stub")), str(env["bin"]), "/usr/bin", "/bin"])
    result = nbgrader(env, course_b.root, tmp_path / "imports.log", "autograde", ASSIGNMENT, "--force", path=path)
    assert result.returncode == 1, result.stderr
    assert "The grading sandbox cannot start, so nothing was graded and earlier results are kept" in result.stderr
    assert ("bubblewrap (bwrap) is not installed" if how == "bubblewrap missing" else "did not start") in result.stderr
    assert "Removing" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert (autograded_state(course_b), gradebook_state(course_b)) == before
