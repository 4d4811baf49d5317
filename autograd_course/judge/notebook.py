"""Judging one notebook: the student's cells run in a kernel in the sandbox, every check runs here.

This process has never run student code, and never will: it is a fresh fork of the warm judge (server.py) per
notebook. Student cells are sent to a kernel (sandbox/kernel.py) one at a time, each with a deadline on this
process's clock; a check (a test cell) is compiled and run here, on faithful copies of the student objects it
names (mirror.py), and it passes if and only if it runs to the end without an exception. The kernel's reports
about its own cells (outputs, self-detected problems) are recorded but decide nothing.

A kernel that has been told more about a check than which names it reads (the arguments of a call, the name of
an attribute, the gradients asked for) is not used after that check: the cells after it run in a new kernel
that replays the student cells first. So nothing a check passes to student code can come back in a later
output or a later check's message.

Time: each cell gets at most ``cell_timeout`` seconds, and the whole notebook at most ``budget`` seconds (derived
from the release by the caller, not from how many cells the submission has), counting each cell's first run;
running cells again to rebuild a kernel has an allowance of its own, as large. A kernel that overruns, crashes or
breaks the protocol is killed; its cell fails with the reason, and the notebook goes on in a new kernel that first
replays the student cells before it (not the checks, and never the cell that failed).

Size: every output of the notebook (streams, results, errors, tracebacks, warnings) counts against one cap.
"""

from __future__ import annotations

import ast
import builtins
import dis
import io
import linecache
import signal
import sys
import time
import traceback
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..sandbox.client import Kernel, KernelLost, Sandbox, SandboxLost
from .mirror import FROM_THE_STUDENT, STUDENT_LINES, CheckOutOfTime, CheckTooLarge, MalformedValues, Mirror, Remote

GRACE_SECONDS = 2.0  # past a cell's limit, how long its kernel may take to report its own timeout
OWN_FILES = str(Path(__file__).resolve().parent.parent)  # the grader's frames never show in a traceback
BUILTIN_NAMES = frozenset(vars(builtins))
REPORTED_KINDS = ("timeout", "resource_limit", "tampered")
TRUNCATED = "\n[output truncated: the notebook's output limit was reached]\n"
MAX_EVENTS = 50  # per notebook; grades.csv's notes stay readable
MAX_EVENTS_PER_REPLY = 10
MAX_OUTPUTS_PER_REPLY = 10  # a kernel sends at most four (stdout, stderr, a result, an error)


@dataclass
class Cell:
    index: int
    name: str
    source: str
    is_test: bool
    hidden_lines: list[int] = field(default_factory=list)  # of a check: where its hidden tests are


@dataclass
class Plan:
    cells: list[Cell]
    cell_timeout: float
    budget: float
    output_limit: int
    memory_mb: int
    value_limit: int = 32 * 2**20
    max_frame: int = 64 * 2**20

    @classmethod
    def from_message(cls, message: dict) -> Plan:
        cells = [Cell(**cell) for cell in message.pop("cells")]
        return cls(cells=cells, **message)


@dataclass
class Verdict:
    """What happened to each code cell (nbformat outputs and an execution count), and the notable events."""

    cells: dict[int, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"kernels": 0.0, "student cells": 0.0, "checks": 0.0})
    sandbox_dirty: str = ""

    def as_message(self) -> dict:
        return {
            "cells": {str(index): cell for index, cell in self.cells.items()},
            "events": self.events,
            "seconds": self.seconds,
            "sandbox_dirty": self.sandbox_dirty,
        }


class NotebookJudge:
    def __init__(self, plan: Plan, sandbox: Sandbox) -> None:
        self.plan, self.sandbox = plan, sandbox
        self.verdict = Verdict()
        # Each cell's first run draws on the budget; replays (to rebuild a kernel) draw on an allowance of the same
        # size, so that an honest notebook is not cut short by the grader's own replays.
        self.spent = {"first run": 0.0, "replay": 0.0}
        self.room = plan.output_limit
        self.execution_count = 0
        self.kernel: Kernel | None = None
        self.failed: set[int] = set()
        self.seen_events: set[tuple] = set()
        # Names a check defines stay for later checks, as in a kernel; the student's code never sees them.
        self.check_names: dict = {"__name__": "__main__", "__builtins__": builtins}

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> Verdict:
        cells = self.plan.cells
        try:
            for position, cell in enumerate(cells):
                if self._left("first run") <= 0:
                    self._out_of_budget(cells[position:], "the notebook's time limit")
                    break
                try:
                    if self.kernel is None:
                        with self._timed("kernels"):
                            self._start_kernel(cells[:position])
                    with self._timed("checks" if cell.is_test else "student cells"):
                        outputs = self._check(cell) if cell.is_test else self._student_cell(cell)
                except ReplayOutOfTime:
                    self._out_of_budget(cells[position:], "the time allowed for running earlier cells again")
                    break
                except KernelLost as lost:
                    self.kernel = None
                    self.failed.add(cell.index)
                    self._event(lost.kind, cell, _lost_detail(lost, self.plan.cell_timeout))
                    outputs = [_error(_LOST_NAMES.get(lost.kind, "KernelDied"), _lost_message(lost, self.plan.cell_timeout))]
                self._record(cell, outputs)
        finally:
            if self.kernel is not None:
                self.kernel.stop()
        # This notebook pays for what it leaves: if the sandbox cannot be emptied, it is replaced before the next.
        self.verdict.sandbox_dirty = self.sandbox.clean()
        return self.verdict

    @contextmanager
    def _timed(self, what: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.verdict.seconds[what] += time.perf_counter() - started

    def _start_kernel(self, before: list[Cell]) -> None:
        """A new kernel, brought to where the last one was: the student cells before this one run again (their
        outputs are not kept), except those that broke a kernel."""
        while True:
            dirt = self.sandbox.clean()
            if dirt:
                raise SandboxLost(f"the sandbox could not be emptied: {dirt}")
            limits = {"memory_mb": self.plan.memory_mb, "cpu_seconds": int(2 * self.plan.budget + 2 * GRACE_SECONDS) + 1}
            kernel = self.kernel = self.sandbox.spawn(limits, self.plan.max_frame)
            try:
                for cell in before:
                    if not cell.is_test and cell.index not in self.failed:
                        if self._left("replay") <= 0:
                            kernel.stop()
                            self.kernel = None
                            raise ReplayOutOfTime()
                        self._student_cell(cell, replay=True)
                return
            except KernelLost as lost:
                self.kernel = None
                self.failed.add(cell.index)
                self._event(lost.kind, cell, "when run again: " + _lost_detail(lost, self.plan.cell_timeout))

    def _out_of_budget(self, rest: list[Cell], what: str) -> None:
        self.verdict.events.append({
            "kind": "timeout", "cell": rest[0].index,
            "detail": f"{what} ({self.plan.budget:g} s) ran out; the cells from here on were not run",
        })
        for cell in rest:
            self.verdict.cells[cell.index] = {
                "outputs": [_error("NotExecuted", f"this cell was not run: {what} ran out")],
                "execution_count": None,
            }

    def _left(self, clock: str) -> float:
        return self.plan.budget - self.spent[clock]

    def _time_for_a_cell(self, clock: str) -> float:
        return max(min(self.plan.cell_timeout, self._left(clock)), 0.001)

    @contextmanager
    def _charged(self, clock: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.spent[clock] += time.monotonic() - started

    @property
    def live_kernel(self) -> Kernel:
        """The kernel the current cell runs in: run() starts one before each cell."""
        if self.kernel is None:
            raise RuntimeError("no kernel is running")
        return self.kernel

    # -------------------------------------------------------------------------------- student cells
    def _student_cell(self, cell: Cell, replay: bool = False) -> list[dict]:
        clock = "replay" if replay else "first run"
        seconds = self._time_for_a_cell(clock)
        with self._charged(clock):
            reply = self.live_kernel.request(
                "run", time.monotonic() + seconds + GRACE_SECONDS,
                source=cell.source, name=f"<cell {cell.index}>", timeout=seconds, room=max(self.room, 0),
            )
        if replay:
            return []
        for event in _list(reply.get("events"))[:MAX_EVENTS_PER_REPLY]:
            if type(event) is dict and event.get("kind") in REPORTED_KINDS:
                self._event(event["kind"], cell, _text(event.get("detail"), 300))
        return _merge_outputs(_list(reply.get("outputs"))[:MAX_OUTPUTS_PER_REPLY])

    # --------------------------------------------------------------------------------------- checks
    def _check(self, cell: Cell) -> list[dict]:
        with self._charged("first run"):
            return self._run_check(cell)

    def _run_check(self, cell: Cell) -> list[dict]:
        filename = f"<check {cell.index}>"
        deadline = time.monotonic() + self._time_for_a_cell("first run")
        remote = Remote(self.kernel, deadline, self.plan.value_limit, GRACE_SECONDS)
        mirror = Mirror(remote)
        stdout = io.StringIO()
        outputs: list[dict] = []
        value = error = None
        fetched: dict = {}
        namespace = self.check_names
        previous_alarm = signal.signal(signal.SIGALRM, _check_out_of_time)
        try:
            # The alarm stops the judge's own work for the check, rebuilding the student's objects included (a few
            # bytes of a message can cost much work to rebuild: a traceback's frames, say); questions to the
            # kernel end at the deadline by themselves.
            signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001) + 2 * GRACE_SECONDS)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    body, tail = _compile_cell(cell.source, filename)
                    student_names = remote.ask("names").get("names")
                    if type(student_names) is not list:
                        raise MalformedValues("the kernel's names are not a list")
                    # Not the helpers an earlier check defined either: a student's function of the same name would
                    # replace them.
                    wanted = sorted(_names_to_fetch(body, tail) & set(student_names) - _check_helpers(namespace))
                    fetched = mirror.fetch(wanted) if wanted else {}
                    fetched = {name: fetched[name] for name in wanted if name in fetched}  # never any other name
                    namespace.update(fetched)
                    sys.stdout = sys.stderr = stdout
                    exec(body, namespace)
                    if tail is not None:
                        value = eval(tail, namespace)
            finally:
                # Disarmed before any handler below runs: stopping a kernel may take a while.
                signal.setitimer(signal.ITIMER_REAL, 0)
        except CheckOutOfTime:
            self._event("timeout", cell, f"the check ran longer than {self.plan.cell_timeout:g} s")
            error = _error("CellTimeoutError", f"the check ran longer than {self.plan.cell_timeout:g} s")
            # The kernel may be in the middle of an answer: it is replaced before the next cell.
            self.live_kernel.stop()
            self.kernel = None
        except CheckTooLarge:
            self._event("resource_limit", cell, f"the values the check reads exceed {self.plan.value_limit // 2**20} MiB")
            error = _error("ResourceLimitError", f"the objects this check reads are larger than {self.plan.value_limit // 2**20} MiB")
        except MalformedValues as malformed:
            self._event("tampered", cell, str(malformed))
            error = _error("TamperedError", "the student's process answered with values that describe no object")
        except KernelLost:
            raise
        except BaseException as exc:  # noqa: BLE001 - a failed check, as Jupyter would show it
            error = _describe_failure(exc, filename, set(cell.hidden_lines))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_alarm)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            for name, copy in fetched.items():
                if namespace.get(name) is copy:
                    del namespace[name]
        if remote.told and self.kernel is not None:
            # The kernel has seen what this check passed to the student's code (hidden inputs, say): the cells
            # after the check run in a new kernel that has not, so nothing of it can be printed or smuggled into
            # a later check's message.
            self.kernel.stop()
            self.kernel = None
        tampering = [event for event in remote.events if event.get("kind") == "tampered"]
        if tampering:
            details = "; ".join(str(event.get("detail", ""))[:200] for event in tampering[:5])
            self._event("tampered", cell, f"while this check ran: {details}")
            error = _error("TamperedError", "the grader found its tools patched while this check ran, so it earns no points")
        text = stdout.getvalue() + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
        if text:
            outputs.append({"output_type": "stream", "name": "stdout", "text": text})
        if value is not None and error is None:
            outputs.append({"output_type": "execute_result", "data": {"text/plain": _safe_repr(value)}, "metadata": {}})
        if error is not None:
            outputs.append(error)
        return outputs

    # -------------------------------------------------------------------------------------- records
    def _record(self, cell: Cell, outputs: list[dict]) -> None:
        self.execution_count += 1
        if self.room <= 0 and not cell.is_test:
            # Past the cap a student cell keeps nothing, not even its error (it is not graded); a check keeps a
            # short error, so that it still fails.
            outputs = []
        kept, overflowed = [], False
        for output in outputs:
            fitted, self.room, cut = _fit(output, self.room)
            overflowed |= cut
            if fitted is not None:
                if fitted["output_type"] == "execute_result":
                    fitted["execution_count"] = self.execution_count
                kept.append(fitted)
        if overflowed:
            self._event("resource_limit", cell, f"output limit ({self.plan.output_limit} characters per notebook) reached")
        self.verdict.cells[cell.index] = {"outputs": kept, "execution_count": self.execution_count}

    def _event(self, kind: str, cell: Cell, detail: str) -> None:
        key = (kind, cell.index, detail)
        if key in self.seen_events:
            return
        self.seen_events.add(key)
        if len(self.verdict.events) < MAX_EVENTS:
            self.verdict.events.append({"kind": kind, "cell": cell.index, "detail": detail})
        elif len(self.verdict.events) == MAX_EVENTS:
            self.verdict.events.append({"kind": kind, "cell": cell.index, "detail": "and more events, not listed"})


# -------------------------------------------------------------------------------------------- helpers
_LOST_NAMES = {"timeout": "CellTimeoutError", "resource_limit": "ResourceLimitError", "tampered": "TamperedError"}


def _lost_detail(lost: KernelLost, cell_timeout: float) -> str:
    if lost.kind == "timeout":
        return f"killed after {cell_timeout:g} s"
    return lost.detail


def _lost_message(lost: KernelLost, cell_timeout: float) -> str:
    if lost.kind == "timeout":
        return f"the cell ran longer than {cell_timeout:g} s"
    if lost.kind == "crashed":
        return f"the cell ended the Python process ({lost.detail.split('(')[-1].rstrip(')')})"
    if lost.kind == "resource_limit":
        return f"the cell hit a resource limit: {lost.detail}"
    return lost.detail


class ReplayOutOfTime(Exception):
    """Running the earlier cells again, to rebuild a kernel, used up its allowance."""


def _check_out_of_time(signum, frame):
    raise CheckOutOfTime()


def _error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}


def _compile_cell(source: str, filename: str) -> tuple[types.CodeType, types.CodeType | None]:
    tree = ast.parse(source, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    body = compile(ast.Module(tree.body, type_ignores=[]), filename, "exec")
    tail = compile(ast.Expression(last.value), filename, "eval") if isinstance(last, ast.Expr) else None
    return body, tail


def _names_to_fetch(body: types.CodeType, tail: types.CodeType | None) -> set[str]:
    """The student names a check reads: global reads anywhere in it, less what the check binds at its top level
    (its own imports, helpers and results). Only names, never attribute names: which names are asked for is all
    the student's process learns of a check."""
    reads, binds = set(), set()
    for code in (body, tail):
        if code is None:
            continue
        reads |= _global_reads(code)
        binds |= {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("STORE_NAME", "DELETE_NAME")}
    return reads - binds - BUILTIN_NAMES


def _check_helpers(namespace: dict) -> set[str]:
    """The functions, classes and modules that checks defined or imported (``def close(...)``, ``import
    traceback``): what is left of a student's copies after a check never includes one (their functions are
    StudentFunction stand-ins, and the names a check fetched are dropped when it ends)."""
    kinds = (types.FunctionType, type, types.ModuleType)
    return {name for name, value in namespace.items() if isinstance(value, kinds)}


def _global_reads(code: types.CodeType) -> set[str]:
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_NAME", "LOAD_GLOBAL")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_reads(const)
    return names


def _describe_failure(exc: BaseException, check_file: str, hidden_lines: set[int]) -> dict:
    """A failed check as Jupyter would show it, minus the check's own lines (hidden tests stay hidden) and the
    grader's frames; the student's frames (from a function of theirs the check called) stay.

    An exception the student's code raised while a hidden line of the check ran it shows only its builtin class:
    its message, its class name, its frames and their lines are all the student's to write, and could carry what
    the hidden test passed in."""
    frames = list(traceback.walk_tb(exc.__traceback__))
    hidden_call = any(frame.f_code.co_filename == check_file and line in hidden_lines for frame, line in frames)
    from_student = getattr(exc, FROM_THE_STUDENT, False) is True or any(frame.f_code in STUDENT_LINES for frame, _ in frames)
    if hidden_call and from_student:
        ename = next((base.__name__ for base in type(exc).__mro__ if base.__module__ == "builtins"), "Exception")
        evalue = "raised by your code while a hidden part of this check ran it"
        return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}
    ename = type(exc).__name__
    try:
        evalue = str(exc)
    except Exception:  # noqa: BLE001
        evalue = "<unprintable exception>"
    lines = []
    for frame, line in frames:
        code = frame.f_code
        if code in STUDENT_LINES:
            text = STUDENT_LINES[code]  # a student's frame: never read the file it names
        elif code.co_filename == check_file or code.co_filename.startswith(OWN_FILES):
            continue
        else:
            text = linecache.getline(code.co_filename, line or 0).strip()
        lines.append(f'  File "{code.co_filename}", line {line}, in {code.co_name}\n' + (f"    {text}\n" if text else ""))
    if lines:
        lines = ["Traceback (most recent call last):\n", *lines[-30:]]
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [*lines, f"{ename}: {evalue}"]}


def _safe_repr(value) -> str:
    try:
        return repr(value)[:10_000]
    except Exception as exc:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def _list(value) -> list:
    return value if type(value) is list else []


def _text(value, limit: int | None = None) -> str:
    """A string from the kernel, made safe to write: no lone surrogates, bounded."""
    text = value if type(value) is str else ""
    if limit is not None:
        text = text[:limit]
    return text.encode("utf-8", "replace").decode("utf-8")


def _clean_output(output) -> dict | None:
    """Rebuild a kernel's output from the fields nbformat allows; anything else is dropped."""
    if type(output) is not dict:
        return None
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return {"output_type": "stream", "name": name, "text": _text(output.get("text"))}
    if kind == "execute_result":
        data = output.get("data")
        if type(data) is not dict:
            data = {}
        return {"output_type": "execute_result", "data": {"text/plain": _text(data.get("text/plain"))}, "metadata": {}}
    if kind == "error":
        return {
            "output_type": "error",
            "ename": _text(output.get("ename"), 200) or "Error",
            "evalue": _text(output.get("evalue")),
            "traceback": [_text(line) for line in _list(output.get("traceback"))],
        }
    return None


def _merge_outputs(raw: list) -> list[dict]:
    """At most one stdout, one stderr, one result and one error per cell, in that order, whatever was sent."""
    streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
    result = error = None
    for output in map(_clean_output, raw):
        if output is None:
            continue
        if output["output_type"] == "stream":
            streams[output["name"]].append(output["text"])
        elif output["output_type"] == "execute_result":
            result = result or output
        else:
            error = error or output
    merged = [{"output_type": "stream", "name": name, "text": "".join(texts)} for name, texts in streams.items() if texts]
    return merged + [output for output in (result, error) if output is not None]


def _fit(output: dict, room: int) -> tuple[dict | None, int, bool]:
    """Charge an output's text against the notebook's room; cut it to fit. Errors are always kept (shortened), so
    that a failed cell still shows that it failed."""
    output = dict(output)
    cut = False
    if output["output_type"] == "stream":
        text = output["text"]
        if len(text) > room:
            output["text"], cut = text[: max(room, 0)] + TRUNCATED, True
        room -= len(text)
        return (output if output["text"] else None), max(room, 0), cut
    if output["output_type"] == "execute_result":
        text = output["data"]["text/plain"]
        if len(text) > room:
            output["data"] = {"text/plain": text[: max(room, 0)] + TRUNCATED}
            cut = True
        return output, max(room - len(text), 0), cut
    size = len(output["ename"]) + len(output["evalue"]) + sum(len(line) for line in output["traceback"])
    if size > room:
        cut = True
        # The message shows twice (evalue, and the traceback's last line): each gets half of what is left.
        output["evalue"] = output["evalue"][: max(room // 2 - len(output["ename"]), 100)] + TRUNCATED.rstrip()
        output["traceback"] = [f"{output['ename']}: {output['evalue']}"]
        size = len(output["ename"]) + len(output["evalue"]) + len(output["traceback"][0])
    return output, max(room - size, 0), cut
