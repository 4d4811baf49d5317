"""Where student code runs: a warm runner process (runner.py) inside a bubblewrap sandbox.

The sandbox sees the Python installation read-only and nothing of the course: not source/, not the
gradebook, not the configuration, not other students' files. It has a private /tmp (size-capped), its own PID
namespace (nothing started inside survives it), no network, and no capabilities.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .course import CourseError
from .runner import encode_message

READY_TIMEOUT = 120  # seconds for a new runner to import torch and say it is ready
TMP_BYTES = 256 * 2**20
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives")


class SandboxUnavailable(CourseError):
    pass


class RunnerFailed(Exception):
    """The runner process died or stopped answering; it is replaced before the next notebook."""


def _python_dirs() -> list[str]:
    """The folders the runner imports from: the Python installation, its site-packages, this package.
    Not sys.path at large: `python -m` and pytest put the working folder there, which may be the course."""
    package = Path(__file__).resolve().parent
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(package), *site.getsitepackages()}
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        candidates.add(site.getusersitepackages())
    existing = sorted({str(Path(p).resolve()) for p in candidates if os.path.isdir(p)})
    # A folder inside another one in the list is bound with it already.
    return [p for p in existing if not any(p != q and p.startswith(q + os.sep) for q in existing)]


def bwrap_command(argv: list[str], protected: list[Path] = ()) -> list[str]:
    """The bubblewrap command line that runs ``argv`` sandboxed. No folder that holds a ``protected`` path
    (the course root) may be bound into the sandbox."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so student code cannot be sandboxed. Install it "
            "(`sudo apt-get install bubblewrap`, or `make install`), or pass --no-sandbox to grade without a "
            "sandbox at your own risk."
        )
    python_dirs = _python_dirs()
    for folder in python_dirs:
        for path in protected:
            path = str(Path(path).resolve())
            if path == folder or path.startswith(folder + os.sep):
                raise SandboxUnavailable(
                    f"the Python installation at {folder} contains the course ({path}); student code would see "
                    "it. Install the course's environment outside the course folder (a .venv inside it is fine)."
                )
    command = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    # The private /tmp comes first: a Python installation under /tmp is bound on top of it.
    command += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--size", str(TMP_BYTES), "--tmpfs", "/dev/shm"]
    command += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        target = os.path.join("/", name)
        if os.path.islink(target):
            command += ["--symlink", os.readlink(target), target]
        elif os.path.isdir(target):
            command += ["--ro-bind", target, target]
    for path in SYSTEM_FILES:
        command += ["--ro-bind-try", path, path]
    # torch reads the CPU's topology at import.
    command += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    for path in python_dirs:
        command += ["--ro-bind", path, path]
    command += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp", "--clearenv"]
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AUTOGRAD_COURSE_SANDBOX": "bwrap",
        # the runner empties /tmp between notebooks, except these read-only mounts
        "AUTOGRAD_COURSE_KEEP": os.pathsep.join(python_dirs),
    }
    for key, value in environment.items():
        command += ["--setenv", key, value]
    return command + ["--", *argv]


class Runner:
    """One warm runner process. Not thread-safe: each grading worker owns one."""

    def __init__(self, sandboxed: bool = True, protected: list[Path] = ()) -> None:
        self.sandboxed = sandboxed
        self.protected = list(protected)
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    def _argv(self) -> list[str]:
        # -E: ignore PYTHON* variables; -P: do not put the working folder on sys.path.
        return [sys.executable, "-E", "-P", "-m", "autograd_course.runner"]

    def start(self) -> None:
        argv = self._argv()
        if self.sandboxed:
            command, env = bwrap_command(argv, self.protected), None
        else:
            command = argv
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "HOME": tempfile.gettempdir()}
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, close_fds=True
        )
        try:
            self._receive(time.monotonic() + READY_TIMEOUT)
        except RunnerFailed as error:
            self.stop()
            message = f"the grading sandbox did not start: {error}\n{self.log_tail()}"
            raise SandboxUnavailable(message) from None

    def run(self, request: dict, budget: float) -> dict:
        """Send one notebook; wait at most `budget` seconds for its results."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        try:
            self.process.stdin.write(encode_message(request))
            self.process.stdin.flush()
            return self._receive(time.monotonic() + budget)
        except (RunnerFailed, OSError) as error:
            self.stop()
            raise RunnerFailed(str(error)) from None

    def _receive(self, deadline: float) -> dict:
        header = self._read_exact(4, deadline)
        length = int.from_bytes(header, "big")
        return json.loads(self._read_exact(length, deadline).decode("utf-8"))

    def _read_exact(self, size: int, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        data = b""
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise RunnerFailed("no answer in time")
            chunk = os.read(fd, size - len(data))
            if not chunk:
                raise RunnerFailed(f"the runner exited ({self.process.poll()})")
            data += chunk
        return data

    def log_tail(self, size: int = 4000) -> str:
        self.log.seek(0, os.SEEK_END)
        self.log.seek(max(self.log.tell() - size, 0))
        return self.log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.process = None


_runners: dict[bool, Runner] = {}


def runner_for_this_process(sandboxed: bool, protected: list[Path] = ()) -> Runner:
    """Each grading process keeps one warm runner and reuses it for every notebook it grades."""
    if sandboxed not in _runners:
        _runners[sandboxed] = Runner(sandboxed, protected)
        _runners[sandboxed].start()
    return _runners[sandboxed]


@atexit.register
def _stop_runners() -> None:
    for runner in _runners.values():
        runner.stop()
