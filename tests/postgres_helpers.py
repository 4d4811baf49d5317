"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` package (installed by `make test`), run
with `initdb` and `pg_ctl` in a temporary folder, on a free loopback port, as a user that is not root, and
stopped at the end.

PostgreSQL refuses to run as root. Run as root (as CI does), the server runs as Debian's `postgres` user when
there is one, else as a system user made for the purpose and removed afterwards. Clients connect over TCP on
127.0.0.1 without a password (trust authentication, loopback only) as the superuser `grader`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SUPERUSER = "grader"
SERVICE_USER = "autograd-course-pg"  # made only when there is no `postgres` user, and removed afterwards


def postgres_tool(name: str) -> str | None:
    """initdb / pg_ctl: on PATH, or where Debian keeps them (/usr/lib/postgresql/<version>/bin)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(Path(path).parts[4]))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of a database on this server (psycopg 3, which `pip install -e .` brings)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = name or f"gradebook_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def _service_user() -> Iterator[tuple[int, int]]:
    """(uid, gid) to run the server as: ourselves unless we are root; else `postgres`, else a user made here."""
    if os.geteuid() != 0:
        yield os.getuid(), os.getgid()
        return
    try:
        entry = pwd.getpwnam("postgres")
        yield entry.pw_uid, entry.pw_gid
        return
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True, capture_output=True,
    )
    try:
        entry = pwd.getpwnam(SERVICE_USER)
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", SERVICE_USER], check=False, capture_output=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a server; yield a PostgresServer; stop it and remove everything it wrote."""
    initdb, pg_ctl = postgres_tool("initdb"), postgres_tool("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs Debian's postgresql package")
    folder = Path(tempfile.mkdtemp(prefix="autograd-course-pg-"))
    try:
        with _service_user() as (uid, gid):
            os.chmod(folder, 0o755)  # noqa: S103 - the server's user must reach its folders inside (nothing secret)
            data, sockets = folder / "data", folder / "run"
            for path in (data, sockets):
                path.mkdir(mode=0o700)
                os.chown(path, uid, gid)
            as_user: dict[str, Any] = {"user": uid, "group": gid, "extra_groups": []} if os.geteuid() == 0 else {}
            environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

            def run(*command: str) -> None:
                result = subprocess.run(
                    command, check=False, cwd=folder, env=environment, capture_output=True, text=True, timeout=120, **as_user
                )
                if result.returncode != 0:
                    log = (folder / "server.log").read_text(errors="replace") if (folder / "server.log").exists() else ""
                    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}\n{log}")

            run(initdb, "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
            port = free_port()
            log = folder / "server.log"
            log.touch()
            os.chown(log, uid, gid)
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off"
            run(pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
            try:
                yield PostgresServer(port, folder)
            finally:
                run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", "60", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
