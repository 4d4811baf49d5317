"""A Jupyter server of the tests' own: an environment that keeps user and machine configuration out, and a server
started in a folder of our choice, ready when its context is entered and stopped, kernels and all, when it is left.

Used by tests/test_browser.py (JupyterLab on a student's workspace) and tests/test_validate.py (a Jupyter server in
the course root). Not named ``jupyter_server.py``: pytest puts tests/ first on sys.path, and a module of that name
would hide the real jupyter_server package from every in-process import of it (nbgrader's server extensions).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

SERVER_START_TIMEOUT = 60  # seconds

#: Environment variables that could bring in configuration from outside the test's own directories.
FOREIGN_PREFIXES = ("JUPYTER", "JPY_", "IPYTHON")


def isolated_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment) with HOME and the Jupyter and IPython directories below ``home``, and
    no other JUPYTER*, JPY_* or IPYTHON* variable, so that no user or machine configuration leaks in. The config,
    data and runtime directories are created."""
    base = os.environ if base is None else base
    env = {key: value for key, value in base.items() if not key.startswith(FOREIGN_PREFIXES)}
    env.update(
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
    )
    for key in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        Path(env[key]).mkdir(parents=True)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a server we started and its kernels (its own process group), gently first."""
    if process.poll() is not None:
        return
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    os.killpg(pgid, signal.SIGTERM)  # jupyter server shuts its kernels down on SIGTERM
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # whatever is left of our group (kernels that did not stop)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


class Server:
    """A Jupyter server started by ``running_server``; every request carries its token."""

    def __init__(self, process: subprocess.Popen, url: str, token: str, log: Path):
        self.process = process
        self.url = url.rstrip("/")
        self.token = token
        self.log = log

    def request(self, method: str, path: str, params: dict[str, str] | None = None, timeout: float = 10):
        """The JSON answer to ``method path?params``."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(  # noqa: S310 - our own local Jupyter server (self.url)
            f"{self.url}{path}{query}",
            method=method,
            data=b"" if method == "POST" else None,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above
            return json.load(response)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"the Jupyter server exited with code {self.process.returncode}\nserver log:\n{tail(self.log)}"
            )

    def stop(self) -> None:
        stop_process_group(self.process)


S = TypeVar("S", bound=Server)


@contextlib.contextmanager
def running_server(
    app: str,
    root: Path,
    env: Mapping[str, str],
    runtime_dir: Path | None = None,
    extra_args: Sequence[str] = (),
    *,
    log: Path | None = None,
    server_class: type[S] = Server,
    start_timeout: float = SERVER_START_TIMEOUT,
    python: str | os.PathLike = sys.executable,
) -> Iterator[S]:
    """``jupyter <app>`` (``server``, ``lab``) serving ``root`` from ``root`` as its cwd, on a free local port with a
    token of its own, in its own process group; ready (``/api/status`` answers) when the block is entered, stopped
    with its kernels when it is left. ``runtime_dir`` is where it announces its URL (by default the environment's
    JUPYTER_RUNTIME_DIR); its output goes to ``log`` (by default ``jupyter-<app>.log`` beside the runtime dir).
    ``python`` is the interpreter of the environment it runs from (by default this one)."""
    runtime_dir = Path(env["JUPYTER_RUNTIME_DIR"]) if runtime_dir is None else runtime_dir
    log = runtime_dir.parent / f"jupyter-{app}.log" if log is None else log
    token = secrets.token_hex(16)
    command = [
        str(python), "-m", "jupyter", app,
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={free_port()}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        *extra_args,
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=root,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that stopping it reaches its kernels too
        )
    try:
        yield _wait_until_ready(process, runtime_dir, token, log, server_class, start_timeout, f"jupyter {app}")
    finally:
        stop_process_group(process)


def _wait_until_ready(
    process: subprocess.Popen,
    runtime_dir: Path,
    token: str,
    log: Path,
    server_class: type[S],
    timeout: float,
    name: str,
) -> S:
    # The server may move to another port if ours was taken meanwhile: read the one it announces.
    info = runtime_dir / f"jpserver-{process.pid}.json"
    deadline = time.monotonic() + timeout
    server = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} did not start (exit code {process.returncode})\nserver log:\n{tail(log)}")
        if server is None and info.exists():
            with contextlib.suppress(ValueError, KeyError):  # being written
                server = server_class(process, json.loads(info.read_text())["url"], token, log)
        if server is not None:
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                if "started" in server.request("GET", "/api/status"):
                    return server
        time.sleep(0.2)
    raise AssertionError(f"{name} did not answer /api/status within {timeout} s\nserver log:\n{tail(log)}")
