"""What the sandbox sees: the bubblewrap command line.

The Python installation read-only, this package read-only at a fixed path, and nothing of the course: not
source/, not the gradebook, not the configuration, not other students' files. A private, size-capped /tmp and
/dev/shm, its own PID namespace (nothing started inside survives it), no network, no capabilities.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
from collections.abc import Sequence
from pathlib import Path

from ..course import CourseError
from ..launch import PACKAGE_DIR

TMP_BYTES = 256 * 2**20
PACKAGE_MOUNT = "/opt/autograd-course/autograd_course"
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives")


class SandboxUnavailable(CourseError):
    pass


def python_dirs() -> list[str]:
    """The folders of the Python installation: prefixes and site-packages. Not sys.path at large: `python -m`,
    pytest and nbgrader put the working folder there, which may be the course."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        candidates.add(site.getusersitepackages())
    existing = sorted({str(Path(p).resolve()) for p in candidates if os.path.isdir(p)})
    # A folder inside another one in the list is bound with it already.
    return [p for p in existing if not any(p != q and p.startswith(q + os.sep) for q in existing)]


def bwrap_command(argv: list[str], protected: Sequence[Path] = ()) -> list[str]:
    """The bubblewrap command line that runs ``argv`` sandboxed. No folder bound into the sandbox may hold a
    ``protected`` path (the course root)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, so student code cannot be sandboxed. Install it "
            "(`sudo apt-get install bubblewrap`, or `make install`), or pass --no-sandbox to grade without a "
            "sandbox at your own risk."
        )
    bound = python_dirs()
    for folder in [*bound, str(PACKAGE_DIR)]:
        for course_path in protected:
            resolved = str(Path(course_path).resolve())
            if resolved == folder or resolved.startswith(folder + os.sep):
                raise SandboxUnavailable(
                    f"{folder} contains the course ({resolved}), and the sandbox needs to see it, so student code "
                    "would see the course too. Install the course's environment outside the course folder (a "
                    ".venv inside it is fine)."
                )
    command = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"]
    command += ["--cap-drop", "ALL"]
    # The private /tmp comes first: a Python installation under /tmp is bound on top of it.
    command += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
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
    for path in bound:
        command += ["--ro-bind", path, path]
    command += ["--ro-bind", str(PACKAGE_DIR), PACKAGE_MOUNT]
    # Kernel settings are the machine's: when grading runs as root they would be writable from inside.
    command += ["--proc", "/proc", "--ro-bind-try", "/proc/sys", "/proc/sys"]
    command += ["--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/dev/shm"]
    # Nothing but /tmp and /dev/shm (emptied after every notebook) can be written: the root and /dev of the
    # sandbox would otherwise be uncapped tmpfs shared by every notebook it runs.
    command += ["--remount-ro", "/dev", "--remount-ro", "/"]
    # /proc too: the zygote's settings (oom_score_adj, autogroup, coredump_filter) are files there, owned by the
    # same uid as a kernel, and would carry a notebook's doing to every later one.
    command += ["--remount-ro", "/proc"]
    command += ["--chdir", "/tmp", "--clearenv"]
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for key, value in environment.items():
        command += ["--setenv", key, value]
    return [*command, "--", *argv]
