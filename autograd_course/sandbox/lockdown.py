"""What a student's kernel may do, fixed before the first line of student code runs and never lifted.

The kernel is a fork of the zygote (zygote.py). These limits close what the sandbox's namespaces leave open
between the notebooks one sandbox runs: with them, a notebook cannot start a process or a thread, reach or signal
another process, or leave anything behind but files in /tmp (which the zygote empties and checks before the
next notebook).
"""

from __future__ import annotations

import errno
import os
import resource

# A kernel that could do any of these could outlive its notebook, reach the zygote, or leave state in the
# sandbox's namespaces (System V and POSIX IPC, keyrings) for the next notebook, another student's, to read.
FORBIDDEN_SYSCALLS = (
    "fork", "vfork", "clone", "clone3", "execve", "execveat",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    "add_key", "keyctl", "request_key",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "name_to_handle_at", "open_by_handle_at", "fanotify_init",
    "ioprio_set", "personality", "syslog",
    # The sandbox's device nodes are the machine's own (bound in by bubblewrap): when grading runs as root, their
    # owner is the student's uid, so changing their mode or owner would change them for the whole machine.
    "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "process_madvise",
)
# Signals may go to this process only.
SIGNAL_SYSCALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
# These take a process id, and may name this process only (by its own pid): the zygote above all is out of reach.
SELF_ONLY_SYSCALLS = ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr", "migrate_pages", "move_pages")
# Socket families besides Unix (1), IPv4 (2) and IPv6 (10): the network namespace does not isolate them all
# (AF_VSOCK reaches the machine's hypervisor), and the course needs none.
FORBIDDEN_SOCKET_FAMILIES = (3, 4, 5, 6, 7, 8, 9)


def apply_limits(memory_mb: int, cpu_seconds: int, file_mb: int = 16, open_files: int = 64) -> None:
    """Cap this process. The address-space cap is on top of what the warm image already maps, so the budget is
    what the student's code may add."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    limit_memory(memory_mb)
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def limit_memory(memory_mb: int) -> None:
    """Cap the address space at what is mapped now plus ``memory_mb``."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_mb * 2**20,) * 2)


def forbid_escapes() -> None:
    """Load the seccomp filter: FORBIDDEN_SYSCALLS fail with EPERM, and signals may only go to this process."""
    import pyseccomp as seccomp

    policy = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for call in FORBIDDEN_SYSCALLS:
        policy.add_rule(seccomp.ERRNO(errno.EPERM), call)
    me = os.getpid()
    for call in SIGNAL_SYSCALLS:
        policy.add_rule(seccomp.ERRNO(errno.EPERM), call, seccomp.Arg(0, seccomp.NE, me))
    deny = seccomp.ERRNO(errno.EPERM)
    for call in SELF_ONLY_SYSCALLS:
        policy.add_rule(deny, call, seccomp.Arg(0, seccomp.GT, me))
        policy.add_rule(deny, call, seccomp.Arg(0, seccomp.LT, me))
    # Limits of other processes cannot be set, nor this one's (they are fixed already); they can be read.
    policy.add_rule(deny, "prlimit64", seccomp.Arg(0, seccomp.GT, me))
    policy.add_rule(deny, "prlimit64", seccomp.Arg(0, seccomp.LT, me), seccomp.Arg(2, seccomp.NE, 0))
    policy.add_rule(deny, "prlimit64", seccomp.Arg(0, seccomp.EQ, me), seccomp.Arg(2, seccomp.NE, 0))
    # Priority: of this process only (which=PRIO_PROCESS, who=0); a lower priority for itself is harmless.
    policy.add_rule(deny, "setpriority", seccomp.Arg(0, seccomp.NE, 0))
    policy.add_rule(deny, "setpriority", seccomp.Arg(1, seccomp.NE, 0))
    for call in ("socket", "socketpair"):
        policy.add_rule(deny, call, seccomp.Arg(0, seccomp.GT, 10))
        for family in FORBIDDEN_SOCKET_FAMILIES:
            policy.add_rule(deny, call, seccomp.Arg(0, seccomp.EQ, family))
    policy.load()


def make_undumpable() -> None:
    """Processes of the same user could otherwise read or write this one's memory and descriptors via /proc."""
    import ctypes

    PR_SET_DUMPABLE = 4
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def close_other_descriptors(keep: int) -> None:
    """Nothing the zygote holds (its control socket, above all) stays open in a kernel; 0-2 go to /dev/null."""
    if keep < 3:
        raise ValueError("the kept descriptor must not be 0, 1 or 2")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.closerange(3, keep)
    os.closerange(keep + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
