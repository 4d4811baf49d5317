"""The process that executes student notebooks, meant to run inside the sandbox (see sandbox.py).

It imports torch once, then serves one request per notebook: each notebook runs in a fresh fork of this warm
process, so no notebook sees another's state and none pays for Python start-up or `import torch` again.

The child that runs a notebook is locked down before any student code runs: no new processes or threads (a
seccomp filter), capped memory, file size and open files, a per-cell alarm, and output caps. Before every test
cell it puts back what student code may have patched (torch, builtins, tracing hooks...) and reports what it
found, so monkeypatching earns nothing and is seen.

Protocol on stdin/stdout: each message is a 4-byte big-endian length and that many bytes of UTF-8 JSON.
Request: {"cells": [{"source": str, "test": bool}], "cell_timeout": s, "memory_mb": n, "output_limit": bytes}.
Reply: {"cells": [{"outputs": [...], "execution_count": n} | null], "events": [{"kind", "cell", "detail"}]}.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import io
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import types
import warnings

GRACE_SECONDS = 2.0  # how long past the alarm a cell may run before its process is killed
# sandbox.py sets this: only inside the sandbox's own PID namespace and tmpfs may the runner kill every other
# process it can see and empty /tmp between notebooks.
SANDBOXED = os.environ.get("AUTOGRAD_COURSE_SANDBOX") == "bwrap"
KEEP = {path for path in os.environ.get("AUTOGRAD_COURSE_KEEP", "").split(os.pathsep) if path}
_MISSING = object()


# ------------------------------------------------------------------------------------------ framing
def read_message(stream) -> dict | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (length,) = struct.unpack(">I", header)
    return json.loads(stream.read(length).decode("utf-8"))


def encode_message(message: dict) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return struct.pack(">I", len(body)) + body


def write_message(stream, message: dict) -> None:
    stream.write(encode_message(message))
    stream.flush()


# ------------------------------------------------------------------------------------- pristine state
class Pristine:
    """What the tests rely on, as it was before any student code ran; `restore` puts it back."""

    def __init__(self) -> None:
        import json
        import math
        import operator

        import torch

        # The harness's own machinery is guarded too: a patched json.dumps or os.write could forge results.
        harness = sys.modules[__name__]
        self.namespaces = [
            ("the grader", harness),
            ("the grader's CellRunner", harness.CellRunner),
            ("the grader's Pristine", harness.Pristine),
            ("json", json),
            ("os", os),
            ("struct", struct),
            ("signal", signal),
            ("builtins", builtins),
            ("torch", torch),
            ("torch.Tensor", torch.Tensor),
            ("torch.autograd", torch.autograd),
            ("torch.optim", torch.optim),
            ("torch.optim.Optimizer", torch.optim.Optimizer),
            ("torch.optim.SGD", torch.optim.SGD),
            ("math", math),
            ("operator", operator),
            ("warnings", warnings),
        ]
        self.snapshots = [(label, obj, dict(vars(obj))) for label, obj in self.namespaces]
        self.modules = {
            name: sys.modules[name] for name in ("builtins", "torch", "math", "operator", "warnings", "json", "os")
        }
        self.sys_hooks = {name: getattr(sys, name) for name in ("excepthook", "displayhook", "breakpointhook")}
        self.warning_filters = list(warnings.filters)
        self.builtin_names = dict(vars(builtins))

    def restore(self) -> list[str]:
        """Undo patches to the guarded state; return a description of each one found."""
        found = []
        for label, obj, snapshot in self.snapshots:
            current = vars(obj)
            for name, value in snapshot.items():
                now = current.get(name, _MISSING)
                if now is not value:
                    # torch wraps some of its own functions lazily (functools.wraps); that is not tampering.
                    if getattr(now, "__wrapped__", None) is not value:
                        found.append(f"{label}.{name} was replaced")
                    _force_setattr(obj, name, value)
            for name in set(current) - set(snapshot):
                if isinstance(current[name], types.ModuleType):
                    continue  # a submodule imported lazily, e.g. torch.distributions
                found.append(f"{label}.{name} was added")
                _force_delattr(obj, name)
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:
                found.append(f"sys.modules[{name!r}] was replaced")
                sys.modules[name] = module
        for name, hook in self.sys_hooks.items():
            if getattr(sys, name) is not hook:
                found.append(f"sys.{name} was replaced")
                setattr(sys, name, hook)
        if sys.gettrace() is not None or sys.getprofile() is not None:
            found.append("a trace or profile hook was installed")
            sys.settrace(None)
            sys.setprofile(None)
        warnings.filters[:] = self.warning_filters
        return found


def _force_setattr(obj, name, value) -> None:
    try:
        setattr(obj, name, value)
    except (AttributeError, TypeError):
        vars(obj)[name] = value  # module dicts are plain dicts


def _force_delattr(obj, name) -> None:
    try:
        delattr(obj, name)
    except (AttributeError, TypeError):
        vars(obj).pop(name, None)


# ------------------------------------------------------------------------------------------ limits
class CellTimeout(BaseException):
    """Raised by the per-cell alarm; a BaseException so `except Exception` in student code does not eat it."""


def _on_alarm(signum, frame):
    raise CellTimeout()


def apply_limits(memory_mb: int, cpu_seconds: int, file_mb: int = 16) -> None:
    """Cap this process before student code runs. The address-space cap is on top of what the warm process
    already maps, so the budget is what the student's code may add."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_mb * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def forbid_new_tasks() -> None:
    """Seccomp: this process may not start processes or threads, run programs, or signal other processes."""
    import errno

    import pyseccomp as seccomp

    policy = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for call in ("fork", "vfork", "clone", "clone3", "execve", "execveat", "ptrace", "process_vm_writev"):
        policy.add_rule(seccomp.ERRNO(errno.EPERM), call)
    me = os.getpid()
    for call in ("kill", "tkill"):
        policy.add_rule(seccomp.ERRNO(errno.EPERM), call, seccomp.Arg(0, seccomp.NE, me))
    policy.add_rule(seccomp.ERRNO(errno.EPERM), "tgkill", seccomp.Arg(0, seccomp.NE, me))
    policy.load()


# ------------------------------------------------------------------------------------------ outputs
class CappedText(io.TextIOBase):
    """A text stream that keeps at most `limit` characters and remembers whether it had to drop any."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.overflowed = False

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        room = self.limit - self.size
        if len(text) > room:
            self.overflowed = True
            text = text[: max(room, 0)]
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


def _names_used(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


class CellRunner:
    """Runs the cells of one notebook in one namespace, the way a Jupyter kernel would."""

    def __init__(self, pristine: Pristine, cell_timeout: float, output_limit: int) -> None:
        self.pristine = pristine
        self.cell_timeout = cell_timeout
        self.output_limit = output_limit
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.execution_count = 0
        # Bound now, so student code cannot swap the harness's own tools out from under it.
        self._exec, self._eval, self._compile, self._parse = exec, eval, compile, ast.parse
        self._setitimer, self._signal = signal.setitimer, signal.signal

    def run(self, index: int, source: str, is_test: bool) -> tuple[dict, list[dict]]:
        events: list[dict] = []
        self.execution_count += 1
        filename = f"<cell {index}>"
        hidden: dict = {}
        if is_test:
            self.namespace["__builtins__"] = builtins
        stdout = CappedText(self.output_limit)
        stderr = stdout if is_test else CappedText(self.output_limit)
        sys.stdout, sys.stderr = stdout, stderr
        outputs: list[dict] = []
        error = None
        caught: list = []
        self._signal(signal.SIGALRM, _on_alarm)
        try:
            with warnings.catch_warnings(record=is_test) as caught:
                if is_test:
                    warnings.simplefilter("always")
                tree = self._parse(source, filename)
                last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
                body = self._compile(ast.Module(tree.body, type_ignores=[]), filename, "exec")
                tail = self._compile(ast.Expression(last.value), filename, "eval") if last else None
                if is_test:
                    hidden = self._hide_shadowed_builtins(body, tail, index, events)
                self._setitimer(signal.ITIMER_REAL, self.cell_timeout)
                try:
                    self._exec(body, self.namespace)
                    value = self._eval(tail, self.namespace) if tail is not None else None
                finally:
                    self._setitimer(signal.ITIMER_REAL, 0)
                if value is not None:
                    outputs.append(
                        {
                            "output_type": "execute_result",
                            "execution_count": self.execution_count,
                            "data": {"text/plain": _safe_repr(value)},
                            "metadata": {},
                        }
                    )
        except CellTimeout:
            events.append({"kind": "timeout", "cell": index, "detail": f"stopped after {self.cell_timeout:g} s"})
            error = {
                "output_type": "error",
                "ename": "CellTimeoutError",
                "evalue": f"the cell ran longer than {self.cell_timeout:g} s",
                "traceback": [f"CellTimeoutError: the cell ran longer than {self.cell_timeout:g} s"],
            }
        except BaseException as exc:  # noqa: BLE001 - every failure of student code becomes an error output
            self._setitimer(signal.ITIMER_REAL, 0)
            if _is_out_of_memory(exc):
                events.append({"kind": "resource_limit", "cell": index, "detail": "memory limit reached"})
            error = _error_output(exc, hide_frames_of=filename if is_test else None)
        finally:
            self._setitimer(signal.ITIMER_REAL, 0)
            # Whatever the cell patched is undone before the harness does anything else (and so before the
            # next cell): the harness's own code must not run on a student's isinstance or json.dumps.
            self._restore(index, events)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            self.namespace.update(hidden)
        text = stdout.getvalue()
        for warning in caught or []:
            text += f"{warning.category.__name__}: {warning.message}\n"
        if text:
            outputs.insert(0, {"output_type": "stream", "name": "stdout", "text": text})
        if stderr is not stdout and stderr.getvalue():
            outputs.insert(1 if text else 0, {"output_type": "stream", "name": "stderr", "text": stderr.getvalue()})
        if stdout.overflowed or stderr.overflowed:
            events.append({"kind": "resource_limit", "cell": index, "detail": "output limit reached"})
        if error:
            outputs.append(error)
        return {"outputs": outputs, "execution_count": self.execution_count}, events

    def _restore(self, index: int, events: list[dict]) -> None:
        for detail in self.pristine.restore():
            events.append({"kind": "tampered", "cell": index, "detail": detail})

    def _hide_shadowed_builtins(self, body, tail, index, events) -> dict:
        """Test code calls builtins (len, abs, isinstance...). A student global of the same name would stand in
        for them, so it is set aside while the test runs, and a callable stand-in is reported."""
        used = _names_used(body) | (_names_used(tail) if tail is not None else set())
        hidden = {}
        for name in used:
            if name in self.pristine.builtin_names and name in self.namespace and name != "__builtins__":
                value = self.namespace.pop(name)
                hidden[name] = value
                if callable(value) and value is not self.pristine.builtin_names[name]:
                    events.append({"kind": "tampered", "cell": index, "detail": f"global {name!r} shadowed a builtin"})
        return hidden


def _safe_repr(value) -> str:
    try:
        return repr(value)[:10_000]
    except BaseException as exc:  # noqa: BLE001 - a broken __repr__ is the student's, not ours
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc).lower()
    )


def _error_output(exc: BaseException, hide_frames_of: str | None) -> dict:
    """An nbformat error output. For a test cell the frames of the test itself are left out, so the traceback
    never shows hidden test source; the assertion message is what the student sees."""
    try:
        ename, evalue = type(exc).__name__, str(exc)
    except BaseException:  # noqa: BLE001
        ename, evalue = "Exception", "<unprintable exception>"
    try:
        frames = traceback.extract_tb(exc.__traceback__)
        if hide_frames_of is not None:
            frames = [frame for frame in frames if frame.filename != hide_frames_of]
        frames = [frame for frame in frames if frame.filename != __file__]
        lines = traceback.format_list(frames)
        if lines:
            lines.insert(0, "Traceback (most recent call last):\n")
    except BaseException:  # noqa: BLE001
        lines = []
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": lines + [f"{ename}: {evalue}"]}


# ------------------------------------------------------------------------------------ one notebook
def run_notebook_in_child(request: dict, skip: dict, pristine: Pristine, out_fd: int, scratch: str) -> None:
    """The body of the forked child: lock down, run the cells, report each, exit. Never returns."""
    def send(message: dict) -> None:
        data = encode_message(message)
        while data:
            data = data[os.write(out_fd, data):]

    try:
        # Output reaches the notebook only through the capped streams; raw writes to fds 1 and 2 go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        os.chdir(scratch)
        cells = len(request["cells"])
        apply_limits(request["memory_mb"], cpu_seconds=int(cells * request["cell_timeout"] + GRACE_SECONDS) + 1)
        forbid_new_tasks()
        runner = CellRunner(pristine, request["cell_timeout"], request["output_limit"])
        for index, cell in enumerate(request["cells"]):
            if index in skip:
                continue
            send({"start": index})
            result, events = runner.run(index, cell["source"], cell["test"])
            send({"done": index, "result": result, "events": events})
        send({"end": True})
    except BaseException as exc:  # noqa: BLE001
        try:
            send({"fatal": f"{type(exc).__name__}: {exc}"})
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(0)


def run_notebook(request: dict, pristine: Pristine, protocol_fds: tuple[int, int], scratch: str) -> dict:
    """Run one notebook, in as many fresh children as it takes: a cell that kills its process or outlives its
    alarm is recorded and skipped, and the notebook runs again from the top without it."""
    cells = request["cells"]
    skip: dict[int, dict] = {}
    events: list[dict] = []
    results: dict[int, dict] = {}
    for _attempt in range(len(cells) + 1):
        results, attempt_events, stopped = _run_child(request, skip, pristine, protocol_fds, scratch)
        events.extend(event for event in attempt_events if event not in events)
        if stopped is None:
            break
        index, event, output = stopped
        skip[index] = output
        events.append(event)
    for index, output in skip.items():
        results[index] = {"outputs": [output], "execution_count": None}
    return {"cells": [results.get(index) for index in range(len(cells))], "events": events}


def _run_child(request, skip, pristine, protocol_fds, scratch):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        for fd in protocol_fds:
            os.close(fd)
        run_notebook_in_child(request, skip, pristine, write_fd, scratch)
    os.close(write_fd)
    results: dict[int, dict] = {}
    events: list[dict] = []
    current = None
    deadline = None
    buffer = b""
    ended = False
    killed_for_time = False
    fatal = None
    try:
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0)
            ready, _, _ = select.select([read_fd], [], [], wait)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                killed_for_time = True
                break
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= 4:
                (length,) = struct.unpack(">I", buffer[:4])
                if len(buffer) < 4 + length:
                    break
                message = json.loads(buffer[4 : 4 + length].decode("utf-8"))
                buffer = buffer[4 + length :]
                if "start" in message:
                    current = message["start"]
                    deadline = time.monotonic() + request["cell_timeout"] + GRACE_SECONDS
                elif "done" in message:
                    results[message["done"]] = message["result"]
                    events.extend(message["events"])
                    current, deadline = None, None
                elif "end" in message:
                    ended = True
                elif "fatal" in message:
                    fatal = message["fatal"]
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        if SANDBOXED:
            _kill_strays()
        _wipe(scratch)
    if ended:
        return results, events, None
    if current is None:
        # The child died between cells or before the first one: a grader fault, not a student's.
        detail = fatal or f"the grading process stopped unexpectedly ({_describe_status(status)})"
        raise RuntimeError(detail)
    if killed_for_time:
        event = {"kind": "timeout", "cell": current, "detail": f"killed after {request['cell_timeout']:g} s"}
        output = _synthetic_error("CellTimeoutError", f"the cell ran longer than {request['cell_timeout']:g} s")
    elif os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGXFSZ):
        event = {"kind": "resource_limit", "cell": current, "detail": _describe_status(status)}
        output = _synthetic_error("ResourceLimitError", f"the cell hit a resource limit ({_describe_status(status)})")
    else:
        event = {"kind": "crashed", "cell": current, "detail": _describe_status(status)}
        output = _synthetic_error("KernelDied", f"the cell ended the Python process ({_describe_status(status)})")
    return results, events, (current, event, output)


def _synthetic_error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _kill_strays() -> None:
    """Nothing a notebook started may outlive it (the seccomp filter should make this a no-op)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (1, me, os.getppid()):
            try:
                os.kill(int(entry), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _wipe(scratch: str) -> None:
    """Empty the scratch folder (and, in the sandbox, /dev/shm) so nothing passes to the next notebook. The
    read-only mounts of the Python installation (KEEP) may live under it: they and their parents stay."""
    for folder in (scratch, "/dev/shm") if SANDBOXED else (scratch,):
        _empty(folder)


def _empty(folder: str) -> None:
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        path = os.path.join(folder, entry)
        if path in KEEP:
            continue
        if any(kept.startswith(path + os.sep) for kept in KEEP):
            _empty(path)
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


# ------------------------------------------------------------------------------------------ serving
def _make_undumpable() -> None:
    """Children run as the same user: without this they could read or write this process through /proc."""
    PR_SET_DUMPABLE = 4
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def serve() -> None:
    # The protocol gets private copies of stdin/stdout; fd 1 then points at stderr, so a stray print (from a
    # library, say) cannot corrupt a reply.
    protocol_in, protocol_out = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _make_undumpable()

    import numpy  # noqa: F401 - imported here once so no notebook pays for it
    import pyseccomp  # noqa: F401
    import torch

    torch.set_num_threads(1)
    # Initialise autograd and the optimizers once, before any fork: their first use costs about a second
    # (torch wraps optimizer methods and imports its compiler lazily).
    warm = torch.tensor([1.0], requires_grad=True)
    optimizer = torch.optim.SGD([warm], lr=0.1)
    (warm * 2).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    pristine = Pristine()
    scratch = "/tmp" if SANDBOXED else tempfile.mkdtemp(prefix="autograd-course-run-")

    reader = os.fdopen(protocol_in, "rb")
    writer = os.fdopen(protocol_out, "wb")
    write_message(writer, {"ready": True, "pid": os.getpid()})
    while True:
        request = read_message(reader)
        if request is None:
            if not SANDBOXED:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        try:
            reply = run_notebook(request, pristine, (protocol_in, protocol_out), scratch)
        except Exception as exc:  # noqa: BLE001 - reported to the grader, which records an `error` outcome
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        write_message(writer, reply)


if __name__ == "__main__":
    serve()
