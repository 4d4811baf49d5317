"""The warm judge: a process outside the sandbox, started once per grading worker, that imports torch once, owns
one sandbox, and forks a fresh judge (notebook.py) for every notebook it is asked to grade.

It runs no student code. It is a process of its own, not part of the caller, so that nbgrader can call the grader
from anywhere (a worker, the formgrader's server thread) and a judge can still fork and use signals.

Requests on its socket: {"plan": ...} -> {"verdict": ...} | {"unavailable": why} | {"failed": why}.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from pathlib import Path

from ..sandbox.bwrap import SandboxUnavailable
from ..sandbox.client import Sandbox, SandboxLost
from ..sandbox.lockdown import limit_memory
from ..wire import Channel, WireError, channel_from_fd, connected_pair
from .notebook import GRACE_SECONDS, NotebookJudge, Plan

JUDGE_MARGIN = 30.0  # seconds past a notebook's budget before its judge is presumed stuck
JUDGE_MEMORY_MB = 4096


def notebook_seconds(budget: float, cell_timeout: float) -> float:
    """The longest a judge may take: the budget for first runs and the allowance for replays, each overrun by
    at most one cell and its grace, and the time to kill and clean up."""
    return 2 * (budget + cell_timeout + 2 * GRACE_SECONDS) + JUDGE_MARGIN


def warm_up() -> None:
    import torch

    from . import mirror  # noqa: F401 - and with it autograd's Function machinery

    torch.set_num_threads(1)
    leaf = torch.tensor([1.0], requires_grad=True)
    (leaf * 2).sum().backward()


def main(args: list[str]) -> None:
    fd, mode, *protected = args
    channel = channel_from_fd(int(fd))
    sandbox = Sandbox(sandboxed=mode == "sandboxed", protected=[Path(path) for path in protected])
    try:
        sandbox.launch()
        warm_up()
        sandbox.wait_until_ready()
    except SandboxUnavailable as error:
        channel.send({"unavailable": str(error)})
        return
    channel.send({"ready": True})
    while True:
        try:
            request = channel.receive()
        except WireError:
            break
        channel.send(judge_notebook(request["plan"], sandbox))
    sandbox.stop()


def judge_notebook(plan_message: dict, sandbox: Sandbox) -> dict:
    """Judge one notebook in a fresh fork. A sandbox that broke or could not be emptied is replaced; if it broke
    before the notebook was judged, the notebook is judged again in the new one, once."""
    for _attempt in range(2):
        if not sandbox.running:
            try:
                sandbox.start()
            except SandboxUnavailable as error:
                return {"unavailable": str(error)}
        reply = _judge_in_fork(Plan.from_message(dict(plan_message)), sandbox)
        if "verdict" not in reply or reply["verdict"].get("sandbox_dirty"):
            sandbox.stop()  # the control conversation may have been cut short, or the sandbox is not clean
        if "sandbox_lost" not in reply:
            return reply
    return {"failed": f"the sandbox broke twice while grading this notebook: {reply['sandbox_lost']}"}


def _judge_in_fork(plan: Plan, sandbox: Sandbox) -> dict:
    ours, theirs = connected_pair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            # The judge copies student objects: whatever they claim, it may not take the machine's memory.
            limit_memory(JUDGE_MEMORY_MB)
            message: dict[str, object] = {"verdict": NotebookJudge(plan, sandbox).run().as_message()}
        except SandboxLost as error:
            message = {"sandbox_lost": str(error)}
        except BaseException:  # noqa: BLE001 - reported to the caller, which records an `error` outcome
            message = {"failed": traceback.format_exc(limit=-8)}
        try:
            Channel(theirs).send(message)
        finally:
            os._exit(0)
    theirs.close()
    deadline = time.monotonic() + notebook_seconds(plan.budget, plan.cell_timeout)
    try:
        reply = ours.receive(deadline)
    except WireError as error:
        os.kill(pid, signal.SIGKILL)
        reply = {"failed": f"the judge did not finish this notebook ({error})"}
    finally:
        ours.close()
        os.waitpid(pid, 0)
    return reply
