"""A real Dask cluster on loopback for the tests and benchmarks/: `dask scheduler` and `dask worker` processes, run
with this Python (sys.executable), each worker in a process group of its own so that a test can kill it as a
machine dies (the worker, its nanny and its grading process at once). Everything is stopped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DASK = [sys.executable, "-m", "dask"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalCluster:
    """A scheduler and its workers, each worker one process (--nworkers 1) with one thread (--nthreads 1)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.started_workers = 0  # names are never reused: the scheduler refuses a name it still knows

    def _start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the process's life
        process = subprocess.Popen(
            [*DASK, *args], cwd=self.folder, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def start_scheduler(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")

    def add_worker(self) -> subprocess.Popen[bytes]:
        name = f"worker-{self.started_workers}"
        self.started_workers += 1
        worker = self._start(
            name, "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
            "--local-directory", str(self.folder / name), "--name", name,
        )
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def kill_worker(self, worker: subprocess.Popen[bytes]) -> None:
        """As a machine dies: SIGKILL to the worker's whole process group, nanny and grading process included."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        self.workers.remove(worker)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in sorted(self.folder.glob("*.log")))

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def local_cluster(folder: Path, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[LocalCluster]:
    """A scheduler and ``workers`` workers on 127.0.0.1, logging into ``folder``; all stopped at the end.
    ``env``: variables added to the processes' environment (Dask settings such as
    DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES)."""
    folder.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(folder, {**os.environ, **(env or {})})
    try:
        cluster.start_scheduler()
        for _ in range(workers):
            cluster.add_worker()
        cluster.wait_for_workers(workers)
        yield cluster
    finally:
        cluster.stop()
