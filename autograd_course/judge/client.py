"""The caller's side of the judge: start the warm judge (server.py) and hand it notebooks.

The caller is whatever nbgrader runs in: an `autograd-course grade` worker, a plain `nbgrader autograde`, or the
formgrader's server. It only sends plans and receives verdicts; it never forks or handles signals itself.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..launch import python_command
from ..sandbox.bwrap import SandboxUnavailable
from ..sandbox.client import READY_TIMEOUT
from ..wire import Channel, WireError, connected_pair
from .server import notebook_seconds


class JudgeFailed(Exception):
    """The judge could not deliver a verdict for a notebook."""


class JudgeService:
    """One warm judge process (and through it one sandbox). Not thread-safe: each caller keeps its own."""

    def __init__(self, sandboxed: bool, protected: Sequence[Path] = ()) -> None:
        self.sandboxed = sandboxed
        self.protected = [str(Path(path).resolve()) for path in protected]
        self.process: subprocess.Popen | None = None
        self.channel: Channel | None = None
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 - the judge's stderr, open as long as this object

    def start(self) -> None:
        self.stop()
        channel, theirs = connected_pair()
        mode = "sandboxed" if self.sandboxed else "unsandboxed"
        command = python_command("autograd_course.judge.server", [theirs.fileno(), mode, *self.protected])
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self.output, stderr=self.output, pass_fds=[theirs.fileno()]
            )
        finally:
            theirs.close()
        self.channel = channel
        try:
            ready = channel.receive(time.monotonic() + 2 * READY_TIMEOUT)
        except WireError as error:
            self.stop()
            raise SandboxUnavailable(f"the grader's judge did not start ({error}):\n{self.output_tail()}") from None
        if "unavailable" in ready:
            self.stop()
            raise SandboxUnavailable(ready["unavailable"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> None:
        """Start the judge (and its sandbox) unless it is running; SandboxUnavailable says why it cannot."""
        if not self.running:
            self.start()

    def judge(self, plan: dict) -> dict:
        """The verdict on one notebook: each code cell's outputs, and the events."""
        self.ensure_running()
        channel = self.channel
        if channel is None:  # ensure_running started it; stop() has not run since
            raise JudgeFailed("the judge is not running")
        # Two attempts (a broken sandbox is replaced once), and the time to start a sandbox in between.
        deadline = time.monotonic() + 2 * notebook_seconds(plan["budget"], plan["cell_timeout"]) + READY_TIMEOUT
        try:
            channel.send({"plan": plan}, deadline)
            reply = channel.receive(deadline)
        except WireError as error:
            self.stop()
            raise JudgeFailed(f"the judge stopped answering ({error})\n{self.output_tail()}") from None
        if "unavailable" in reply:
            raise SandboxUnavailable(reply["unavailable"])
        if "verdict" not in reply:
            raise JudgeFailed(str(reply.get("failed") or reply.get("sandbox_lost") or reply)[-2000:])
        return reply["verdict"]

    def output_tail(self, size: int = 4000) -> str:
        self.output.seek(0, os.SEEK_END)
        self.output.seek(max(self.output.tell() - size, 0))
        return self.output.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None


_services: dict[tuple, JudgeService] = {}


def judge_for_this_process(sandboxed: bool, protected: Sequence[Path] = ()) -> JudgeService:
    """Each process that grades keeps one warm judge and reuses it for every notebook."""
    key = (sandboxed, tuple(str(Path(path).resolve()) for path in protected))
    if key not in _services:
        _services[key] = JudgeService(sandboxed, protected)
    return _services[key]


@atexit.register
def stop_all() -> None:
    for service in _services.values():
        service.stop()
