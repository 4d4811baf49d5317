"""How the grader's processes talk: length-prefixed JSON frames over sockets, read with a deadline and a size cap.

One framing for every channel: the judge and a student's kernel, the grading worker and the sandbox's zygote,
the judge and the grading worker. The reader never trusts the writer: a frame larger than the cap, a frame that
is not JSON, or no frame by the deadline is an error of the writer's, raised as a `WireError`, and the caller
decides what that costs (for a student's kernel: the kernel is killed and the cell fails).

The values that cross between the judge and a kernel are described in `sandbox/snapshot.py` (the kernel's side)
and `judge/mirror.py` (the judge's side).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 64 * 2**20


class WireError(Exception):
    """The other side broke the protocol: it went away, said nothing in time, or said something malformed."""


class Closed(WireError):
    pass


class TimedOut(WireError):
    pass


class Malformed(WireError):
    pass


def encode(message) -> bytes:
    # ASCII: a string with a lone surrogate (a student can make one) still makes a valid frame; JSON escapes it.
    body = json.dumps(message, separators=(",", ":"), allow_nan=True).encode("ascii")
    return HEADER.pack(len(body)) + body


def decode(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError) as error:
        raise Malformed(f"not a JSON message ({type(error).__name__})") from None


class Channel:
    """Frames over a connected stream socket. Not thread-safe."""

    def __init__(self, sock: socket.socket, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        # Non-blocking, so that a deadline bounds a send too: a blocking send of a frame larger than the socket's
        # buffer waits for the reader, and the reader may be a student's process that never reads.
        sock.setblocking(False)
        self.sock = sock
        self.max_frame = max_frame

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message, deadline: float | None = None) -> None:
        data = encode(message)
        view = memoryview(data)
        while view:
            self._wait(select.POLLOUT, deadline)
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError as error:
                raise Closed(f"the other side went away ({error.strerror})") from None
            view = view[sent:]

    def receive(self, deadline: float | None = None):
        (length,) = HEADER.unpack(self._read(HEADER.size, deadline))
        if length > self.max_frame:
            raise Malformed(f"a message of {length} bytes, more than the {self.max_frame} allowed")
        return decode(self._read(length, deadline))

    def _read(self, size: int, deadline: float | None) -> bytes:
        chunks, got = [], 0
        while got < size:
            self._wait(select.POLLIN, deadline)
            try:
                chunk = self.sock.recv(min(size - got, 1 << 20))
            except BlockingIOError:
                continue
            except OSError as error:
                raise Closed(f"the other side went away ({error.strerror})") from None
            if not chunk:
                raise Closed("the other side closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _wait(self, event: int, deadline: float | None) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), event)
        while True:
            if deadline is None:
                timeout_ms = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimedOut("no answer in time")
                timeout_ms = max(1, int(remaining * 1000))
            if poller.poll(timeout_ms):
                return

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def channel_from_fd(fd: int, max_frame: int = DEFAULT_MAX_FRAME) -> Channel:
    return Channel(socket.socket(fileno=fd), max_frame)


def connected_pair(max_frame: int = DEFAULT_MAX_FRAME) -> tuple[Channel, socket.socket]:
    """A new stream connection: our end as a Channel, and the raw socket to hand to the other process."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    os.set_inheritable(theirs.fileno(), True)
    return Channel(ours, max_frame), theirs
