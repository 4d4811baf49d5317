"""The warm process inside the sandbox: it imports torch once and forks a fresh kernel for every notebook.

It never sees a student's code, values or outputs, and no test: it only receives small control requests on
one socket (spawn a kernel on this descriptor, kill it, clean up), so a kernel, a fork of it, finds nothing of
any other notebook in its memory. Between notebooks it kills whatever is left in the sandbox and empties /tmp
and /dev/shm; if they cannot be made empty, it says so, and the sandbox is replaced.

Control requests (one JSON object per SOCK_SEQPACKET message):
  {"op": "spawn", "limits": {...}} with the kernel's socket attached  ->  {"pid": n}
  {"op": "kill", "pid": n}                                            ->  {"status": "exit code 0" | "killed by SIGKILL"...}
  {"op": "clean"}                                                     ->  {"clean": bool, "detail": str}
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import stat
import sys

from . import kernel, lockdown

MAX_CONTROL_MESSAGE = 65536
MAX_WIPE_STEPS = 1_000_000


def warm_up():
    """Import and initialise what every notebook uses, once: autograd and the optimizers cost about a second on
    first use (torch wraps optimizer methods and imports its compiler lazily)."""
    import numpy  # noqa: F401 - torch warns on import without it
    import pyseccomp  # noqa: F401
    import torch

    torch.set_num_threads(1)
    weight = torch.tensor([1.0], requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.1)
    (weight * 2).sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        try:
            return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        except ValueError:
            return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


class Scratch:
    """The folders a notebook may write to, and how to make them empty again."""

    def __init__(self, folders: list[str], keep: set[str]) -> None:
        self.folders = folders
        self.keep = keep
        self.modes = {folder: stat.S_IMODE(os.lstat(folder).st_mode) for folder in folders}
        self.limits = _limits()

    def wipe(self) -> list[str]:
        """Empty every folder and check the zygote itself; return what could not be put right."""
        left = []
        for folder in self.folders:
            try:
                os.chmod(folder, self.modes[folder])
            except OSError:
                left.append(f"{folder} could not be given back its permissions")
            self._empty(folder, left)
        if _limits() != self.limits:
            left.append("the zygote's resource limits were changed")
        return left

    def _empty(self, folder: str, left: list[str]) -> None:
        try:
            entries = os.listdir(folder)
        except OSError as error:
            left.append(f"{folder}: {error.strerror}")
            return
        for entry in entries:
            path = os.path.join(folder, entry)
            if path in self.keep:
                continue
            if any(kept.startswith(path + os.sep) for kept in self.keep):
                self._empty(path, left)
                continue
            self._remove(path, left)

    def _remove(self, path: str, left: list[str]) -> None:
        """Remove a file or a whole tree, reading each folder once. It walks by changing directory, so that no path
        grows with the depth (a tree can be deeper than a path can name), and it never follows a link or opens a
        file."""
        parent, top = os.path.split(path)
        try:
            os.chdir(parent)
            if not stat.S_ISDIR(os.lstat(top).st_mode):
                os.unlink(top)
                return
            os.chmod(top, 0o700)
            os.chdir(top)
            trail = [top]  # the folders from `path` down to the current one
            pending = [self._entries(".")]  # for each of them, the entries still to remove
            for _ in range(MAX_WIPE_STEPS):
                if not pending[-1]:
                    pending.pop()
                    os.chdir("..")
                    os.rmdir(trail.pop())
                    if not trail:
                        return
                    continue
                name, is_dir = pending[-1].pop()
                if not is_dir:
                    os.unlink(name)
                    continue
                try:
                    os.rmdir(name)
                except OSError:
                    os.chmod(name, 0o700)
                    os.chdir(name)
                    trail.append(name)
                    pending.append(self._entries("."))
            left.append(f"{path}: too many entries to remove")
        except OSError as error:
            left.append(f"{path}: {error.strerror}")
        finally:
            os.chdir("/")

    @staticmethod
    def _entries(folder: str) -> list[tuple[str, bool]]:
        with os.scandir(folder) as scan:
            return [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]


def _limits() -> dict[str, tuple[int, int]]:
    return {name: resource.getrlimit(getattr(resource, name)) for name in dir(resource) if name.startswith("RLIMIT_")}


def kill_strays(spared: set[int]) -> None:
    """In the sandbox's own PID namespace: nothing a notebook started may outlive it (seccomp should make this
    a no-op)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in spared:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def main(args: list[str]) -> None:
    control_fd, mode, *folders = args
    sandboxed = mode == "sandboxed"
    keep = set()
    if "--keep" in folders:
        folders, keep = folders[: folders.index("--keep")], set(folders[folders.index("--keep") + 1 :])
    lockdown.make_undumpable()
    # Nothing reads stdin; stdout goes where stderr goes (the sandbox's log), so a stray print cannot land on a
    # socket.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    warm_up()
    pristine = kernel.prepare()
    scratch = Scratch(folders, keep)
    control = socket.socket(fileno=int(control_fd))
    _send(control, {"ready": True, "pid": os.getpid(), "package": os.path.dirname(os.path.dirname(__file__))})
    children: set[int] = set()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, MAX_CONTROL_MESSAGE, 1)
        except OSError:
            data, fds = b"", []
        if not data:
            break
        request = json.loads(data)
        op = request.get("op")
        if op == "spawn" and len(fds) == 1:
            pid = os.fork()
            if pid == 0:
                control.close()
                kernel.serve(fds[0], request["limits"], pristine, folders[0])  # never returns
            os.close(fds[0])
            children.add(pid)
            _send(control, {"pid": pid})
        elif op == "kill" and request.get("pid") in children:
            pid = request["pid"]
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(pid, 0)
            children.discard(pid)
            _send(control, {"status": describe_status(status), "code": status})
        elif op == "clean":
            if sandboxed:
                kill_strays({1, os.getpid(), os.getppid()})
            left = scratch.wipe()
            _send(control, {"clean": not left, "detail": "; ".join(left[:5])})
        else:
            for fd in fds:
                os.close(fd)
            _send(control, {"error": f"unknown request {op!r}"})
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    sys.exit(0)


def _send(control: socket.socket, message: dict) -> None:
    control.send(json.dumps(message).encode("utf-8"))
