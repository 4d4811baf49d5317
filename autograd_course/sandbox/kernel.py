"""A student's kernel: one notebook's student code, in a fresh fork of the zygote, locked down.

It runs the cells the student's process runs (setup, answers, anything the student added) the way a Jupyter
kernel would, and answers the judge's questions about the objects they left: their names, their values as data
(sandbox/snapshot.py), calls to the student's functions with arguments the judge chose, attribute reads, and
the gradients of a tensor's graph. It never sees a test: test cells run in the judge (judge/), which decides every
verdict. Whatever this process says is what the student's code computed, or what the student wrote by hand.

Requests and replies are wire frames; each request has a "seq" that its reply repeats. Ops:
  ping     {}                                     -> {"ready": true}   (before any student code)
  run      {"source", "name", "timeout", "room"}  -> {"outputs": [...], "events": [...]}
  names    {}                                     -> {"names": [...]}
  fetch    {"names", "budget"}                    -> {"values": message}   (message root: {name: value})
  call     {"target", "args", "grad_enabled", "budget", "timeout"} -> {"result": message} | {"raised": message}
  getattr  {"target", "name", "budget", "timeout"} -> as call
  vjp      {"target", "leaves", "grad_output", "budget", "timeout"} -> as call, the result a list of gradients
Every reply carries "events": what the grader's watch on this process found since the last reply.
"""

from __future__ import annotations

import ast
import builtins
import functools
import io
import linecache
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence

from ..wire import Channel, WireError, channel_from_fd
from . import lockdown, snapshot
from .pristine import Pristine

MAX_NAMES = 10_000
MAX_REPR = 10_000


class CellTimeout(BaseException):
    """Raised by the per-cell alarm; a BaseException so `except Exception` in student code does not eat it. The
    judge does not rely on it: it kills a kernel that overruns by its own clock."""


def _on_alarm(signum, frame):
    raise CellTimeout()


class CappedText(io.TextIOBase):
    """A text stream that keeps at most `room` characters and remembers whether it had to drop any."""

    def __init__(self, room: int) -> None:
        self.parts: list[str] = []
        self.room = room
        self.overflowed = False

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        if len(text) > self.room:
            self.overflowed = True
            text = text[: max(self.room, 0)]
        self.parts.append(text)
        self.room -= len(text)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


BACKWARD_CALLS = "backward_calls"


def prepare() -> Pristine:
    """Called in the zygote before any fork: the grader's instruments, then the state a kernel's watch compares
    against."""
    import torch

    record_backward_calls(torch)
    keep_one_thread(torch)
    return Pristine(sys.modules[__name__], snapshot)


def record_backward_calls(torch) -> None:
    """Count, for every graph node, the backward calls whose graph went through it (``y.backward()``,
    ``y.sum().backward()``, ``torch.autograd.backward([y])``, with ``retain_graph=True`` too). The count is kept in
    the kernel (snapshot.BACKWARD_RECORD), not on the student's objects, and a check reads it as
    ``y.grad_fn.metadata["backward_calls"]`` on the judge's copy: it tells a gradient computed by backward from one
    written by hand."""
    original = torch.autograd.backward

    @functools.wraps(original)
    def backward(tensors, *args, **kwargs):
        if not isinstance(tensors, torch.Tensor):
            tensors = tuple(tensors)
        result = original(tensors, *args, **kwargs)
        roots = [
            tensor.grad_fn for tensor in ((tensors,) if isinstance(tensors, torch.Tensor) else tensors)
            if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None
        ]
        for node in snapshot.graph_nodes(roots, limit=1000):
            snapshot.BACKWARD_RECORD.setdefault(id(node), [node, 0])[1] += 1
        return result

    torch.autograd.backward = backward


def keep_one_thread(torch) -> None:
    """A kernel may not start threads (seccomp): asking torch for more would make it fail, so it keeps one."""
    torch.set_num_threads = functools.wraps(torch.set_num_threads)(lambda threads: None)
    torch.set_num_interop_threads = functools.wraps(torch.set_num_interop_threads)(lambda threads: None)


def serve(fd: int, limits: dict, pristine: Pristine, scratch: str) -> None:
    """The body of a kernel: lock down, then answer requests until the judge hangs up. Never returns."""
    try:
        if fd < 3:
            fd = os.dup(fd)
        lockdown.close_other_descriptors(keep=fd)
        os.chdir(scratch)
        lockdown.apply_limits(int(limits["memory_mb"]), cpu_seconds=int(limits["cpu_seconds"]))
        lockdown.forbid_escapes()
        Kernel(channel_from_fd(fd, int(limits["max_frame"])), pristine).loop()
    finally:
        os._exit(0)


class Kernel:
    def __init__(self, channel: Channel, pristine: Pristine) -> None:
        self.channel = channel
        self.pristine = pristine
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.handles = snapshot.Handles()
        # Bound now, so that student code cannot swap the kernel's own tools out from under it.
        self._exec, self._eval, self._compile, self._parse = exec, eval, compile, ast.parse
        self._setitimer, self._signal = signal.setitimer, signal.signal
        self.ops = {
            "ping": lambda request: {"ready": True}, "run": self.run, "names": self.names, "fetch": self.fetch,
            "call": self.call, "getattr": self.getattr, "vjp": self.vjp,
        }

    def loop(self) -> None:
        while True:
            try:
                request = self.channel.receive()
            except WireError:
                return
            op = self.ops.get(request.get("op"))
            try:
                reply: dict = op(request) if op else {"error": f"unknown op {request.get('op')!r}"}
            except snapshot.TooLarge:
                reply = {"too_large": True}
            except Exception as error:  # noqa: BLE001 - a malformed request, or student code breaking ours
                reply = {"error": f"{type(error).__name__}: {error}"[:1000]}
            reply["events"] = reply.get("events", []) + [
                {"kind": "tampered", "detail": detail} for detail in self.pristine.restore()
            ]
            reply["seq"] = request.get("seq")
            try:
                self.channel.send(reply)
            except WireError:
                return

    # --------------------------------------------------------------------------------------- cells
    def run(self, request: dict) -> dict:
        source, name = str(request["source"]), str(request["name"])
        timeout, room = float(request["timeout"]), int(request["room"])
        events: list[dict] = []
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        stdout, stderr = CappedText(room), CappedText(room)
        outputs: list[dict] = []
        error = None
        value = None
        self._signal(signal.SIGALRM, _on_alarm)
        sys.stdout, sys.stderr = stdout, stderr
        try:
            tree = self._parse(source, name)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            body = self._compile(ast.Module(tree.body, type_ignores=[]), name, "exec")
            tail = self._compile(ast.Expression(last.value), name, "eval") if isinstance(last, ast.Expr) else None
            self._setitimer(signal.ITIMER_REAL, timeout)
            try:
                self._exec(body, self.namespace)
                value = self._eval(tail, self.namespace) if tail is not None else None
            finally:
                self._setitimer(signal.ITIMER_REAL, 0)
        except CellTimeout:
            events.append({"kind": "timeout", "detail": f"stopped after {timeout:g} s"})
            error = error_output("CellTimeoutError", f"the cell ran longer than {timeout:g} s")
        except BaseException as exc:  # noqa: BLE001 - every failure of student code becomes an error output
            self._setitimer(signal.ITIMER_REAL, 0)
            if _is_out_of_memory(exc):
                events.append({"kind": "resource_limit", "detail": "memory limit reached"})
            error = describe_error(exc, room)
        finally:
            self._setitimer(signal.ITIMER_REAL, 0)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        for stream, stream_name in ((stdout, "stdout"), (stderr, "stderr")):
            if stream.getvalue():
                outputs.append({"output_type": "stream", "name": stream_name, "text": stream.getvalue()})
        if value is not None:
            text = _safe_repr(value)
            outputs.append({"output_type": "execute_result", "data": {"text/plain": text}, "metadata": {}})
        if stdout.overflowed or stderr.overflowed:
            events.append({"kind": "resource_limit", "detail": "output limit reached"})
        if error:
            outputs.append(error)
        return {"outputs": outputs, "events": events}

    # ------------------------------------------------------------------------------------ questions
    def names(self, request: dict) -> dict:
        names = [name for name in list(self.namespace) if type(name) is str and not name.startswith("__")]
        return {"names": names[:MAX_NAMES]}

    def fetch(self, request: dict) -> dict:
        encoder = snapshot.Encoder(self.handles, int(request["budget"]))
        found = {}
        for name in request["names"]:
            if type(name) is str and name in self.namespace:
                found[name] = self.namespace[name]
        return {"values": encoder.message(found)}

    def call(self, request: dict) -> dict:
        target = self.handles.get(request["target"])
        args, kwargs = snapshot.Decoder(self.handles).message(request["args"])
        import torch

        with torch.set_grad_enabled(bool(request["grad_enabled"])):
            return self._answer(lambda: target(*args, **kwargs), request)

    def getattr(self, request: dict) -> dict:
        target = self.handles.get(request["target"])
        name = str(request["name"])
        return self._answer(lambda: getattr(target, name), request)

    def vjp(self, request: dict) -> dict:
        import torch

        output = self.handles.get(request["target"])
        leaves = [self.handles.get(handle) for handle in request["leaves"]]
        gradient = snapshot.Decoder(self.handles).message(request["grad_output"])

        def differentiate():
            with torch.enable_grad():
                return list(torch.autograd.grad([output], leaves, [gradient], retain_graph=True, allow_unused=True))

        return self._answer(differentiate, request)

    def _answer(self, compute, request: dict) -> dict:
        """Run student code for the judge, silently (its output would show in no cell), under the alarm."""
        quiet = CappedText(0)
        sys.stdout, sys.stderr = quiet, quiet
        self._signal(signal.SIGALRM, _on_alarm)
        self._setitimer(signal.ITIMER_REAL, float(request["timeout"]))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = compute()
        except CellTimeout:
            return {"timeout": True}
        except BaseException as exc:  # noqa: BLE001 - the student's exception, reported as data
            self._setitimer(signal.ITIMER_REAL, 0)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            return {"raised": snapshot.Encoder(self.handles, int(request["budget"])).message(exc)}
        finally:
            self._setitimer(signal.ITIMER_REAL, 0)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        return {"result": snapshot.Encoder(self.handles, int(request["budget"])).message(result)}


# ---------------------------------------------------------------------------------------- outputs
def _safe_repr(value) -> str:
    try:
        text = repr(value)
        if type(text) is not str:
            raise TypeError("__repr__ returned a non-string")
        return text[:MAX_REPR]
    except BaseException as exc:  # noqa: BLE001 - a broken __repr__ is the student's, not ours
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc).lower()
    )


def error_output(ename: str, evalue: str, lines: Sequence[str] = ()) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [*lines, f"{ename}: {evalue}"]}


def describe_error(exc: BaseException, room: int) -> dict:
    """An nbformat error output, without the kernel's own frames."""
    try:
        ename, evalue = type(exc).__name__, str(exc)[:room]
    except BaseException:  # noqa: BLE001
        ename, evalue = "Exception", "<unprintable exception>"
    try:
        frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename != __file__]
        lines = traceback.format_list(frames[-30:])
        if lines:
            lines.insert(0, "Traceback (most recent call last):\n")
    except BaseException:  # noqa: BLE001
        lines = []
    return error_output(ename, evalue, lines)
