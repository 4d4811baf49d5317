"""A student's view of Question 6, in a real browser.

Starts JupyterLab on a temporary student workspace that holds copies of the release notebooks, drives
headless Chromium through Playwright, types a correct and then a wrong answer into the first answer cell of
q6_basic_gradients.ipynb, runs all cells, and checks what the visible check cell (grade_id ``q6_gradient``)
shows: nothing when the answer is right, the hint "did you create x with requires_grad=True?" when
requires_grad was forgotten. Last, it clicks the notebook's Validate button (nbgrader's labextension) and checks
that the validation dialog lists the failing check with the same hint. The server runs in the student workspace,
not the course root, so that validation uses nbgrader's defaults; tests/test_validate.py checks the button's
endpoint with the course configuration.

Screenshots go to ``<repo root>/test-artifacts/browser/``. Chromium and Playwright's Python package are
required (``make test`` installs both); if either is missing the test fails, it is not skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from jupyter_helpers import Server, isolated_env, running_server, tail

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO_ROOT = Path(__file__).resolve().parent.parent
RELEASE_DIR = REPO_ROOT / "release" / "autograd_basics"
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "browser"
ASSIGNMENT = "autograd_basics"
NOTEBOOK = "q6_basic_gradients.ipynb"

# Playwright cannot download its own browser on this machine; Debian's Chromium is used instead.
CHROMIUM = os.environ.get("AUTOGRAD_COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# The release notebook's first answer cell, and what the student types into it.
ANSWER_STUB = '# YOUR CODE HERE\nraise NotImplementedError()\nprint("x.grad =", x.grad)'
CORRECT_ANSWER = 'x = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3 * x\ny.backward()\nprint("x.grad =", x.grad)'
# Forgot requires_grad=True (and so cannot call backward): the answer cell itself runs without an error,
# so that Run All reaches the check cell.
WRONG_ANSWER = 'x = torch.tensor([2.0])\ny = x**2 + 3 * x\nprint("x.grad =", x.grad)'
HINT = "did you create x with requires_grad=True?"

KERNEL_TIMEOUT = 45  # first kernel start plus `import torch`
UI_TIMEOUT_MS = 30_000
# No browser, news or update checks of JupyterLab's own.
LAB_ARGS = [
    "--ServerApp.open_browser=False",
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
]


# --- helpers ---------------------------------------------------------------------------------------


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


class LabServer(Server):
    """JupyterLab, with what the test needs to know of its notebooks' kernels."""

    def lab_url(self, notebook_path: str) -> str:
        return f"{self.url}/lab/tree/{urllib.parse.quote(notebook_path)}?token={self.token}"

    def kernel_state(self, notebook_path: str) -> str | None:
        """The execution state of the kernel of the session on ``notebook_path``, or None without one."""
        for session in self.request("GET", "/api/sessions"):
            if session.get("path") == notebook_path and session.get("kernel"):
                kernel = self.request("GET", f"/api/kernels/{session['kernel']['id']}")
                return kernel.get("execution_state")
        return None

    def wait_for_idle_kernel(self, notebook_path: str, timeout: float = KERNEL_TIMEOUT) -> None:
        """Wait until the notebook has a kernel and that kernel has been idle for a moment."""
        deadline = time.monotonic() + timeout
        idle_since = None
        state = None
        while time.monotonic() < deadline:
            self.check_alive()
            state = self.kernel_state(notebook_path)
            if state == "idle":
                idle_since = idle_since or time.monotonic()
                # Run All sends cells one after the other; idle must last, not be the gap between two cells.
                if time.monotonic() - idle_since >= 1.0:
                    return
            else:
                idle_since = None
            time.sleep(0.2)
        raise AssertionError(
            f"the kernel of {notebook_path} was not idle after {timeout} s (last state: {state})\n"
            f"server log:\n{tail(self.log)}"
        )


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(
            f"Playwright's Python package is missing ({error}); install the test tools with "
            "`make test` or `pip install -e '.[test]'`",
            pytrace=False,
        )
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is missing: no executable at {CHROMIUM}; install it with `make test` "
            "(apt-get install chromium) or point AUTOGRAD_COURSE_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    manager = sync_playwright()
    playwright = manager.start()
    try:
        yield playwright
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def student_workspace(tmp_path_factory) -> Path:
    """A student's folder with the assignment as nbgrader fetch lays it out: <assignment>/<notebook>."""
    notebooks = sorted(RELEASE_DIR.glob("*.ipynb"))
    assert notebooks, f"no release notebooks in {RELEASE_DIR}"
    workspace = tmp_path_factory.mktemp("student")
    (workspace / ASSIGNMENT).mkdir()
    for notebook in notebooks:
        shutil.copy2(notebook, workspace / ASSIGNMENT / notebook.name)
    return workspace


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory, student_workspace):
    """JupyterLab on the student workspace, with its own HOME and Jupyter directories."""
    env = isolated_env(tmp_path_factory.mktemp("jupyter-home"))
    # No news, update checks or toasts in the way; all cells in the DOM (no windowing).
    settings = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / "@jupyterlab"
    _write_json(
        settings / "apputils-extension" / "notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
    )
    _write_json(
        settings / "notebook-extension" / "tracker.jupyterlab-settings",
        {"windowingMode": "none"},
    )
    with running_server("lab", student_workspace, env, extra_args=LAB_ARGS, server_class=LabServer) as server:
        yield server


@pytest.fixture
def page(playwright_api, tmp_path):
    context = playwright_api.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000},
    )
    try:
        context.set_default_timeout(UI_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        yield page
    finally:
        context.close()


# --- the notebook in the browser -------------------------------------------------------------------


def _editor_text(cell) -> str:
    return "\n".join(line.inner_text() for line in cell.locator(".cm-content .cm-line").all()).replace(
        "\u200b", ""
    )


def _type_answer(page, cell, code: str) -> None:
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    # insert_text puts the code in as one edit: no auto-indent or auto-closed brackets.
    page.keyboard.insert_text(code)
    page.wait_for_function(
        """([element, expected]) => {
            const lines = [...element.querySelectorAll('.cm-content .cm-line')].map(l => l.textContent);
            return lines.join('\\n').replace(/\\u200b/g, '') === expected;
        }""",
        arg=[cell.element_handle(), code],
    )
    page.keyboard.press("Escape")  # leave edit mode, as a student clicking elsewhere would


def _run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    page.locator(".lm-Menu-item", has=label).click()


def _prompt_number(cell) -> int | None:
    match = re.search(r"\[(\d+)\]", cell.locator(".jp-InputPrompt").inner_text())
    return int(match.group(1)) if match else None


def _wait_for_run(page, server, cells, after: int | None) -> int:
    """Wait until Run All has run the check cell (prompt number above ``after``) and the kernel is idle."""
    answer, check = cells
    page.wait_for_function(
        """([answer, check, after]) => {
            const number = el => {
                const m = /\\[(\\d+)\\]/.exec(el.querySelector('.jp-InputPrompt').textContent);
                return m ? Number(m[1]) : null;
            };
            const a = number(answer), c = number(check);
            return a !== null && c !== null && c > a && a > after;
        }""",
        arg=[answer.element_handle(), check.element_handle(), after if after is not None else 0],
        timeout=KERNEL_TIMEOUT * 1000,
    )
    server.wait_for_idle_kernel(f"{ASSIGNMENT}/{NOTEBOOK}")
    return _prompt_number(check)


def _screenshot(page, name: str) -> Path:
    path = ARTIFACTS_DIR / name
    page.screenshot(path=str(path))
    return path


def test_q6_check_cell_in_jupyterlab(page, lab_server, record_property, capsys):
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS_DIR.glob("*.png"):
        old.unlink()
    record_property("browser_artifacts", str(ARTIFACTS_DIR))
    with capsys.disabled():
        print(f"\n[test_browser] screenshots: {ARTIFACTS_DIR}")

    notebook_path = f"{ASSIGNMENT}/{NOTEBOOK}"
    try:
        page.goto(lab_server.lab_url(notebook_path))
        panel = page.locator(".jp-NotebookPanel:visible")
        panel.wait_for()
        cells = panel.locator(".jp-Notebook .jp-Cell")
        # The answer cell is the code cell holding the stub; the check cell comes right after it.
        page.wait_for_function(
            "(n) => document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length >= n",
            arg=5,
        )
        sources = [_editor_text(cell) if cell.locator(".cm-content").count() else "" for cell in cells.all()]
        assert ANSWER_STUB in sources, f"no answer cell with the stub {ANSWER_STUB!r} in {sources}"
        index = sources.index(ANSWER_STUB)
        answer, check = cells.nth(index), cells.nth(index + 1)
        assert 'x.requires_grad is False: did you create x with requires_grad=True?' in sources[index + 1], (
            "the cell after the answer cell is not the q6_gradient check cell"
        )
        lab_server.wait_for_idle_kernel(notebook_path)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
        answer.scroll_into_view_if_needed()
        shot_opened = _screenshot(page, "01-notebook-opened.png")

        # A correct answer: the check cell runs without any output.
        _type_answer(page, answer, CORRECT_ANSWER)
        _run_all_cells(page)
        first_run = _wait_for_run(page, lab_server, (answer, check), after=None)
        answer_output = answer.locator(".jp-OutputArea")
        assert "x.grad = tensor([7.])" in answer_output.inner_text()
        # Tracebacks and anything on stderr are rendered with the stderr MIME type.
        assert check.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, (
            f"the check cell failed on a correct answer:\n{check.locator('.jp-OutputArea').inner_text()}"
        )
        check.scroll_into_view_if_needed()
        answer.scroll_into_view_if_needed()
        shot_pass = _screenshot(page, "02-check-passes.png")

        # Forgot requires_grad=True: the check cell fails with the hint.
        _type_answer(page, answer, WRONG_ANSWER)
        _run_all_cells(page)
        error = check.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        error.filter(has_text=HINT).wait_for(timeout=KERNEL_TIMEOUT * 1000)
        _wait_for_run(page, lab_server, (answer, check), after=first_run)
        assert "x.grad = None" in answer.locator(".jp-OutputArea").inner_text()
        error_text = error.inner_text()
        assert f"AssertionError: x.requires_grad is False: {HINT}" in error_text, error_text
        # Bring the end of the traceback, where the hint is, into view.
        error.evaluate("element => element.scrollIntoView({block: 'end'})")
        shot_hint = _screenshot(page, "03-hint-shown.png")

        # The toolbar's Validate button (nbgrader's labextension) saves the notebook, validates it on the
        # server and lists the failing cells; the q6_gradient check is among them, with its hint.
        panel.locator(".jp-Toolbar .jp-ToolbarButtonComponent", has_text=re.compile(r"^\s*Validate\s*$")).click()
        message = page.locator(".jp-Dialog #validation-message")
        message.wait_for(timeout=KERNEL_TIMEOUT * 1000)
        assert "validation-failed" in (message.get_attribute("class") or ""), message.inner_text()
        failed_text = message.inner_text()
        assert f"AssertionError: x.requires_grad is False: {HINT}" in failed_text, failed_text
        message.get_by_text(HINT).last.scroll_into_view_if_needed()
        shot_validate = _screenshot(page, "04-validate-button.png")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        message.wait_for(state="detached")
    except BaseException:
        try:
            _screenshot(page, "failure.png")
        except Exception:  # noqa: BLE001, S110 - the screenshot is a courtesy; the failure is re-raised below
            pass
        raise

    for shot in (shot_opened, shot_pass, shot_hint, shot_validate):
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"
        record_property(f"screenshot_{shot.stem}", str(shot))
