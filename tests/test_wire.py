"""The framing every grader process speaks (autograd_course/wire.py), over real socket pairs, in milliseconds.

The reader never trusts the writer: whatever arrives that is not one well-formed frame in time is the writer's
error, raised as a `WireError`, never a hang, a crash or a message taken at face value.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from autograd_course import wire


@pytest.fixture
def pair():
    ours, theirs = wire.connected_pair(max_frame=1024)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_message_arrives_whole_and_in_order(pair):
    ours, theirs = pair
    peer = wire.Channel(theirs)
    messages = [{"op": "run", "cell": 3}, [1, 2.5, None, True], "x" * 900, {"nested": {"deep": [[]]}}]
    for message in messages:
        ours.send(message, deadline=time.monotonic() + 1)
    assert [peer.receive(time.monotonic() + 1) for _ in messages] == messages


def test_text_a_student_can_make_still_makes_a_valid_frame(pair):
    """A lone surrogate is a valid Python str but not valid UTF-8: the frame escapes it rather than failing."""
    ours, theirs = pair
    wire.Channel(theirs).send({"out": "bad \ud800 text", "nan": float("nan")})
    received = ours.receive(time.monotonic() + 1)
    assert received["out"] == "bad \ud800 text"
    assert received["nan"] != received["nan"]


def test_a_frame_larger_than_the_cap_is_refused_before_it_is_read(pair):
    ours, theirs = pair
    theirs.sendall(wire.HEADER.pack(10 * 2**20))  # claims 10 MiB, sends nothing more
    with pytest.raises(wire.Malformed, match="more than the 1024 allowed"):
        ours.receive(time.monotonic() + 1)


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[" * 100_000, b'{"a": '])
def test_a_frame_that_is_not_json_is_malformed(pair, body):
    ours, theirs = pair
    ours.max_frame = len(body) + 1
    theirs.sendall(wire.HEADER.pack(len(body)) + body)
    with pytest.raises(wire.Malformed):
        ours.receive(time.monotonic() + 1)


def test_silence_ends_at_the_deadline(pair):
    ours, _ = pair
    started = time.monotonic()
    with pytest.raises(wire.TimedOut):
        ours.receive(started + 0.05)
    assert time.monotonic() - started < 1


def test_a_frame_trickled_a_byte_at_a_time_still_ends_at_the_deadline(pair):
    """A writer cannot keep the reader waiting beyond the deadline by sending just enough to look alive."""
    ours, theirs = pair
    stop = threading.Event()

    def trickle() -> None:
        theirs.sendall(wire.HEADER.pack(1000))
        while not stop.is_set():
            try:
                theirs.send(b" ")
            except OSError:
                return
            time.sleep(0.01)

    writer = threading.Thread(target=trickle)
    writer.start()
    started = time.monotonic()
    try:
        with pytest.raises(wire.TimedOut):
            ours.receive(started + 0.2)
        assert time.monotonic() - started < 1
    finally:
        stop.set()
        writer.join()


def test_a_writer_that_goes_away_mid_frame_is_closed_not_a_hang(pair):
    ours, theirs = pair
    theirs.sendall(wire.HEADER.pack(100) + b'{"half":')
    theirs.close()
    with pytest.raises(wire.Closed):
        ours.receive(time.monotonic() + 1)


def test_sending_to_a_reader_that_never_reads_ends_at_the_deadline():
    ours, theirs = wire.connected_pair()
    try:
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with pytest.raises(wire.TimedOut):
            ours.send("y" * (8 * 2**20), deadline=time.monotonic() + 0.1)
    finally:
        ours.close()
        theirs.close()
