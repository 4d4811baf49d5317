"""The judge's handles on the sandbox (`Sandbox`: start it, spawn and kill kernels, clean up) and on one kernel
(`Kernel`: ask it to run a cell or answer a question, by the judge's own clock).

Everything a kernel says is checked for form here: a reply that is late, too large, malformed or out of turn
ends the kernel (it is killed, and `KernelLost` says why), so a student's process cannot hold the judge.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..launch import PACKAGE_DIR, python_command
from ..wire import Closed, Malformed, TimedOut, WireError, connected_pair
from .bwrap import PACKAGE_MOUNT, SandboxUnavailable, bwrap_command, python_dirs

READY_TIMEOUT = 120  # seconds for a new sandbox to import torch and say it is ready
CONTROL_TIMEOUT = 20
KERNEL_START_TIMEOUT = 20
MAX_CONTROL_MESSAGE = 65536


class SandboxLost(Exception):
    """The zygote died or stopped answering; the sandbox must be replaced."""


class KernelLost(BaseException):
    """The kernel had to be stopped. A BaseException: a check's `except Exception` must not swallow it."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


class Sandbox:
    """One bubblewrap sandbox with a warm zygote in it. Not thread-safe."""

    def __init__(self, sandboxed: bool = True, protected: Sequence[Path] = ()) -> None:
        self.sandboxed = sandboxed
        self.protected = [Path(path) for path in protected]
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 - the sandbox's stderr, open as long as this object
        self.scratch: tempfile.TemporaryDirectory | None = None
        self.owner = os.getpid()

    @property
    def running(self) -> bool:
        if os.getpid() != self.owner:
            # A fork of the owner (a judge) shares the control socket but cannot wait for the process.
            return self.control is not None
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.launch()
        self.wait_until_ready()

    def launch(self) -> None:
        """Start the sandbox without waiting for it (it imports torch meanwhile)."""
        if os.getpid() != self.owner:
            raise SandboxLost("only the process that started the sandbox can start it again")
        self.stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if self.sandboxed:
            keep = [path for path in python_dirs() if path.startswith(("/tmp/", "/dev/shm/"))]
            args = [theirs.fileno(), "sandboxed", "/tmp", "/dev/shm", "--keep", *keep]
            command = bwrap_command(python_command("autograd_course.sandbox.zygote", args, PACKAGE_MOUNT), self.protected)
            env = None
        else:
            self.scratch = tempfile.TemporaryDirectory(prefix="autograd-course-kernel-")
            args = [theirs.fileno(), "unsandboxed", self.scratch.name]
            command = python_command("autograd_course.sandbox.zygote", args, PACKAGE_DIR)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "HOME": self.scratch.name}
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self.output, stderr=self.output, env=env,
                pass_fds=[theirs.fileno()], start_new_session=not self.sandboxed,
            )
        finally:
            theirs.close()
        self.control = ours

    def wait_until_ready(self) -> None:
        try:
            ready = self._receive(time.monotonic() + READY_TIMEOUT)
        except SandboxLost as error:
            self.stop()
            raise SandboxUnavailable(f"the grading sandbox did not start: {error}\n{self.output_tail()}") from None
        expected = PACKAGE_MOUNT if self.sandboxed else str(PACKAGE_DIR)
        if ready.get("package") != expected:
            self.stop()
            raise SandboxUnavailable(f"the sandbox ran the grader from {ready.get('package')}, not {expected}")

    def spawn(self, limits: dict, max_frame: int) -> Kernel:
        """A fresh kernel for one notebook."""
        if not self.running:
            self.start()
        channel, theirs = connected_pair(max_frame)
        try:
            reply = self._request({"op": "spawn", "limits": dict(limits, max_frame=max_frame)}, fds=[theirs.fileno()])
        finally:
            theirs.close()
        if "pid" not in reply:
            channel.close()
            raise SandboxLost(f"the sandbox could not start a kernel: {reply}")
        kernel = Kernel(self, reply["pid"], channel)
        # No student code has run in it yet: a kernel that cannot answer now means the sandbox is broken (a
        # notebook may have found a way to damage the zygote), not that this student did anything.
        try:
            kernel.request("ping", time.monotonic() + KERNEL_START_TIMEOUT)
        except KernelLost as lost:
            raise SandboxLost(f"a new kernel did not start ({lost.detail})") from None
        return kernel

    def kill(self, pid: int) -> tuple[str, int]:
        """Stop a kernel for certain; return how it ended, in words and as a wait status."""
        reply = self._request({"op": "kill", "pid": pid})
        return reply.get("status", "unknown"), int(reply.get("code", 0))

    def clean(self) -> str:
        """Empty what the last notebook could write to; a description of what could not be, or ''."""
        reply = self._request({"op": "clean"})
        return "" if reply.get("clean") else (reply.get("detail") or "the sandbox could not be emptied")

    def _request(self, message: dict, fds: Sequence[int] = ()) -> dict:
        if not self.running or self.control is None:
            raise SandboxLost("the sandbox is not running")
        try:
            socket.send_fds(self.control, [json.dumps(message).encode("utf-8")], list(fds))
        except OSError as error:
            raise SandboxLost(f"the sandbox went away ({error.strerror})") from None
        return self._receive(time.monotonic() + CONTROL_TIMEOUT)

    def _receive(self, deadline: float) -> dict:
        control = self.control
        if control is None:
            raise SandboxLost("the sandbox is not running")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxLost("no answer in time")
            if select.select([control], [], [], remaining)[0]:
                break
        try:
            data = control.recv(MAX_CONTROL_MESSAGE)
        except OSError as error:
            raise SandboxLost(f"the sandbox went away ({error.strerror})") from None
        if not data:
            raise SandboxLost(f"the sandbox exited ({self.process.poll() if self.process else None})")
        return json.loads(data)

    def output_tail(self, size: int = 4000) -> str:
        self.output.seek(0, os.SEEK_END)
        self.output.seek(max(self.output.tell() - size, 0))
        return self.output.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if os.getpid() != self.owner:
            return
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    if self.sandboxed:
                        self.process.kill()
                    else:
                        os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait()
            self.process = None
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch = None


class Kernel:
    """One student's kernel, seen from the judge. Each request has a deadline on the judge's clock."""

    def __init__(self, sandbox: Sandbox, pid: int, channel) -> None:
        self.sandbox, self.pid, self.channel = sandbox, pid, channel
        self.seq = 0
        self.alive = True

    def request(self, op: str, deadline: float, **fields) -> dict:
        if not self.alive:
            raise KernelLost("error", "the kernel was already stopped")
        self.seq += 1
        try:
            self.channel.send({"op": op, "seq": self.seq, **fields}, deadline)
            reply = self.channel.receive(deadline)
        except TimedOut:
            self.stop()
            raise KernelLost("timeout", "stopped by the grader's clock") from None
        except Malformed as error:
            self.stop()
            kind = "resource_limit" if "more than" in str(error) else "tampered"
            raise KernelLost(kind, f"the student's process sent {error}") from None
        except (Closed, WireError):
            description, status = self.stop()
            raise KernelLost(_kind_of_exit(status), f"the Python process ended ({description})") from None
        if type(reply) is not dict or reply.get("seq") != self.seq:
            self.stop()
            raise KernelLost("tampered", "the student's process answered out of turn")
        return reply

    def stop(self) -> tuple[str, int]:
        """Kill the kernel (a no-op if it already ended) and return how it ended."""
        if not self.alive:
            return "stopped", 0
        self.alive = False
        self.channel.close()
        return self.sandbox.kill(self.pid)


def _kind_of_exit(status: int) -> str:
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGXFSZ):
        return "resource_limit"
    return "crashed"
