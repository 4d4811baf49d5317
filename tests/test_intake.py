"""Intake on its own, fast: what `stage_student` makes of each kind of broken or hostile file.

An instructor's checks, for every case: the notebook in trouble is staged as the release (graded as if left
blank) with an `invalid` event whose note names the cause; the student's other notebooks are staged from their
own content, byte for byte; nothing under submitted/ changed; and staging returned promptly (every call runs
under a time limit, so a regression that blocks on a named pipe fails the test instead of hanging the suite).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import nbformat
import pytest

from autograd_course import grading, intake, outcomes
from autograd_course.catalog import solved

from course_helpers import submit

Q6, Q7, Q8, Q9 = "q6_basic_gradients", "q7_weights", "q8_breaking_the_graph", "q9_gradient_accumulation"
STUDENT = "student"
MARKER = "# intake-test-marker"
PROMPTLY = 60  # seconds; staging a student takes well under one


# ------------------------------------------------------------------------------------------ helpers
def promptly(function, *args, seconds: float = PROMPTLY):
    """Run ``function`` in a thread; fail the test (instead of hanging) if it has not returned in time."""
    result: dict = {}

    def target():
        try:
            result["value"] = function(*args)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(function, '__name__', function)} did not return within {seconds} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


_scandir, _open = os.scandir, os.open  # the real ones, whatever a test patches


def _digest(name: str, folder_fd: int, size: int) -> str:
    if size > 2**26:  # a sparse giant: its size and no content
        return f"{size} bytes"
    descriptor = _open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(descriptor, 2**20):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(descriptor)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: its kind, a regular file's content digest, a link's target. Walked by
    descriptors without recursion and without following links, so trees deeper than a path can name work."""
    entries: dict[str, tuple] = {}
    pending = [(_open(folder, os.O_RDONLY | os.O_DIRECTORY), "")]
    while pending:
        folder_fd, prefix = pending.pop()
        try:
            with _scandir(folder_fd) as listing:
                for entry in listing:
                    found = entry.stat(follow_symlinks=False)
                    mode, detail = found.st_mode, None
                    if stat.S_ISREG(mode):
                        detail = _digest(entry.name, folder_fd, found.st_size)
                    elif stat.S_ISLNK(mode):
                        detail = os.readlink(entry.name, dir_fd=folder_fd)
                    elif stat.S_ISDIR(mode):
                        try:
                            inner = _open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder_fd)
                            pending.append((inner, f"{prefix}{entry.name}/"))
                        except PermissionError:
                            detail = "unreadable"
                    entries[prefix + entry.name] = (stat.S_IFMT(mode), detail)
        finally:
            os.close(folder_fd)
    return entries


def honest(course) -> dict:
    return {notebook_id: solved(course, notebook_id) for notebook_id in course.notebook_ids}


def with_marker(course, notebook_id: str) -> nbformat.NotebookNode:
    """The solution with a marker line in its first answer cell, to recognise the student's own copy."""
    nb = solved(course, notebook_id)
    answer = next(cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("solution"))
    answer.source += f"\n{MARKER}\n"
    return nb


def folder_of(course, student: str = STUDENT) -> Path:
    return course.submitted_dir / student / course.assignment_id


def staging_of(course) -> Path:
    return course.root / "staging"


def stage(course, student: str = STUDENT) -> dict[str, nbformat.NotebookNode]:
    """Stage one student under a time limit, insisting that their submission is left as it was."""
    before = snapshot(course.submitted_dir)
    promptly(intake.stage_student, course, course.submitted_dir / student, staging_of(course))
    assert snapshot(course.submitted_dir) == before, "staging changed the submitted files"
    out = staging_of(course) / student / course.assignment_id
    assert sorted(path.name for path in out.glob("*.ipynb")) == [f"{i}.ipynb" for i in course.notebook_ids]
    return {notebook_id: nbformat.read(out / f"{notebook_id}.ipynb", 4) for notebook_id in course.notebook_ids}


def staged_bytes(course, notebook_id: str, student: str = STUDENT) -> bytes:
    return (staging_of(course) / student / course.assignment_id / f"{notebook_id}.ipynb").read_bytes()


def release_cells(course, notebook_id: str) -> list:
    return nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4).cells


def assert_blank(course, staged, notebook_id: str, kind: str, *phrases: str) -> None:
    """Staged as the release, with one event of ``kind`` whose note has every phrase."""
    nb = staged[notebook_id]
    assert nb.cells == release_cells(course, notebook_id)
    events = outcomes.recorded(nb)
    assert [event.reason.value for event in events] == [kind], events
    for phrase in phrases:
        assert phrase in events[0].detail, (phrase, events[0].detail)


def assert_own(course, notebook_ids, student: str = STUDENT) -> None:
    """Staged exactly as submitted (the submissions are written canonically), with no event."""
    for notebook_id in notebook_ids:
        submitted = (folder_of(course, student) / f"{notebook_id}.ipynb").read_bytes()
        assert staged_bytes(course, notebook_id, student) == submitted, notebook_id


def q6_data(course) -> dict:
    return json.loads(nbformat.writes(solved(course, Q6)))


def cell_index(data: dict, grade_id: str) -> int:
    return next(i for i, cell in enumerate(data["cells"]) if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def changed(change):
    """A Q6 submission (bytes) made from the solution by ``change(data)``, which may return new text."""

    def build(course) -> bytes:
        data = q6_data(course)
        text = change(data)
        return (text if isinstance(text, str) else json.dumps(data)).encode("utf-8")

    return build


def with_text(old: str, new: str):
    """A Q6 submission whose JSON text has ``old`` replaced by ``new`` (for what json.dumps will not write)."""
    return changed(lambda data: json.dumps(data).replace(old, new, 1))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def setitem(path: list, value):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return changed(change)


# ----------------------------------------------------------------------------- one broken notebook
BROKEN = {
    # text that is not text
    "lone surrogate in a source": (setitem(["cells", 3, "source"], "x = 1  # \ud800"), "lone surrogate (\\ud800)"),
    "lone surrogate in a key": (setitem(["metadata", "note\udfff"], 1), "lone surrogate (\\udfff)"),
    "lone surrogate in cell metadata": (setitem(["cells", 1, "metadata", "tags"], ["\udc00"]), "lone surrogate"),
    "NUL in a source": (setitem(["cells", 3, "source"], "x = 1\x00"), "NUL character"),
    "NUL in a key": (setitem(["cells", 0, "metadata", "a\x00b"], 1), "NUL character"),
    "not UTF-8": (lambda course: nbformat.writes(solved(course, Q6)).encode("utf-8") + b"\xff", "not UTF-8"),
    "an encoded surrogate": (lambda course: b'{"cells": [], "x": "\xed\xa0\x80"}', "not UTF-8"),
    "empty file": (lambda course: b"", "not valid JSON"),
    # JSON that Python's parser takes badly
    "nesting past the recursion limit": (with_text('"cells": [', f'"deep": {nested(100_000)}, "cells": ['), "nested too deeply"),
    "nesting past the kept depth": (setitem(["metadata", "deep"], json.loads(nested(intake.MAX_DEPTH + 5))), "levels deep"),
    "integer past Python's digit limit": (with_text('"nbformat": 4', f'"n": {"9" * 5000}, "nbformat": 4'), "more than 1000 digits"),
    "integer just past the kept length": (with_text('"nbformat": 4', f'"n": {"9" * 1001}, "nbformat": 4'), "digits"),
    "float that overflows": (with_text('"nbformat": 4', '"n": 1e999, "nbformat": 4'), "out of range"),
    "negative float that overflows": (with_text('"nbformat": 4', '"n": -1.5e400, "nbformat": 4'), "out of range"),
    "huge exponent": (with_text('"nbformat": 4', '"n": 1e99999999999999999999, "nbformat": 4'), "out of range"),
    "NaN": (with_text('"nbformat": 4', '"n": NaN, "nbformat": 4'), "NaN is not a JSON number"),
    "-Infinity": (with_text('"nbformat": 4', '"n": -Infinity, "nbformat": 4'), "-Infinity is not a JSON number"),
    "duplicate key": (with_text('"nbformat": 4', '"nbformat": 3, "nbformat": 4'), 'key "nbformat" appears twice'),
    "duplicate key in a cell": (with_text('"cell_type": "code"', '"cell_type": "markdown", "cell_type": "code"'), "appears twice"),
    # JSON that is not a notebook
    "a list": (lambda course: b"[1, 2, 3]", "not an nbformat 4 notebook"),
    "nbformat 4.0": (setitem(["nbformat"], 4.0), "not an nbformat 4 notebook"),
    "nbformat 3": (setitem(["nbformat"], 3), "not an nbformat 4 notebook"),
    "nbformat_minor -1": (setitem(["nbformat_minor"], -1), "nbformat_minor"),
    "nbformat_minor huge": (setitem(["nbformat_minor"], 10**30), "nbformat_minor"),
    "nbformat_minor a string": (setitem(["nbformat_minor"], "5"), "nbformat_minor"),
    "metadata not an object": (setitem(["metadata"], ["x"]), "metadata is not an object"),
    "cell metadata not an object": (setitem(["cells", 2, "metadata"], "x"), "metadata of cell 2 is not an object"),
    "a cell that is a number": (changed(lambda data: data["cells"].append(7)), "is not an object"),
    "source a list of numbers": (setitem(["cells", 3, "source"], [1, 2]), "source of cell 3 is not text"),
    "source a number": (setitem(["cells", 3, "source"], 5), "source of cell 3 is not text"),
    "schema violation": (setitem(["cells", 3, "cell_type"], "banana"), "not a valid notebook"),
    "invalid cell id": (setitem(["cells", 3, "id"], "has spaces!"), "not a valid notebook"),
    "no cells": (changed(lambda data: data.pop("cells")), "no list of cells"),
    # too much of it
    "too many cells": (changed(lambda data: data["cells"].extend([data["cells"][1]] * intake.MAX_CELLS)), "more than 1000 cells"),
    "too much source": (setitem(["cells", 3, "source"], "#" * (intake.MAX_SOURCE_CHARS + 1)), "characters of code and text"),
    "too many values": (setitem(["metadata", "junk"], [[]] * intake.MAX_VALUES), "more than 100000 JSON values"),
    "too many source lines": (setitem(["cells", 3, "source"], [""] * intake.MAX_VALUES), "more than 100000 JSON values"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_notebook_is_graded_as_blank_and_the_others_as_submitted(course, case):
    build, phrase = BROKEN[case]
    submit(course, STUDENT, {**honest(course), Q6: build(course)})
    staged = stage(course)
    assert_blank(course, staged, Q6, "invalid", f"{Q6}.ipynb", phrase, "graded as if left blank")
    assert_own(course, [Q7, Q8, Q9])


def test_read_notebook_refuses_each_broken_case_with_its_reason(course, tmp_path):
    for case, (build, phrase) in BROKEN.items():
        path = tmp_path / f"{Q6}.ipynb"
        path.write_bytes(build(course))
        with pytest.raises(intake.Unreadable) as refused:
            intake.read_notebook(path)
        assert phrase in str(refused.value), (case, str(refused.value))


def test_an_honest_notebook_is_read_back_as_written(course, tmp_path):
    path = tmp_path / f"{Q6}.ipynb"
    submit(course, STUDENT, honest(course))
    nb, repairs = intake.read_notebook(folder_of(course) / f"{Q6}.ipynb", course.submitted_dir / STUDENT)
    assert repairs == [] and nb == solved(course, Q6)
    path.write_bytes((folder_of(course) / f"{Q6}.ipynb").read_bytes())
    assert intake.read_notebook(path) == (nb, [])


def test_a_notebook_that_cannot_be_written_is_staged_as_the_release(course, monkeypatch):
    """Whatever makes writing one notebook fail, that notebook alone is graded as blank."""
    real = intake.write_canonical

    def fails_on_the_marker(path, nb):
        if any(MARKER in cell.source for cell in nb.cells):
            "\ud800".encode("utf-8")  # raises UnicodeEncodeError, as a lone surrogate did
        real(path, nb)

    monkeypatch.setattr(intake, "write_canonical", fails_on_the_marker)
    submit(course, STUDENT, {**honest(course), Q7: with_marker(course, Q7)})
    staged = stage(course)
    assert_blank(course, staged, Q7, "invalid", "could not be staged", "UnicodeEncodeError", "graded as if left blank")
    assert_own(course, [Q6, Q8, Q9])


def test_a_file_over_the_size_cap_is_refused_without_being_read(course):
    submit(course, STUDENT, {**honest(course), Q6: None})
    with open(folder_of(course) / f"{Q6}.ipynb", "wb") as handle:
        handle.truncate(2**40)  # a sparse terabyte: reading it would take far longer than the time limit
    staged = stage(course)
    assert_blank(course, staged, Q6, "invalid", "larger than 20 MiB")
    assert_own(course, [Q7, Q8, Q9])


def test_the_size_cap_counts_bytes(course, monkeypatch):
    submit(course, STUDENT, honest(course))
    size = (folder_of(course) / f"{Q6}.ipynb").stat().st_size
    monkeypatch.setattr(intake, "MAX_NOTEBOOK_BYTES", size)
    stage(course)
    assert_own(course, [Q6])
    monkeypatch.setattr(intake, "MAX_NOTEBOOK_BYTES", size - 1)
    assert_blank(course, stage(course), Q6, "invalid", f"larger than {size - 1} bytes")


def test_outputs_are_dropped_whatever_they_hold(course):
    """Grading clears outputs anyway: deep, odd or huge outputs do not make a notebook invalid."""
    data = q6_data(course)
    answer = cell_index(data, "q6-gradient-answer")
    data["cells"][answer]["execution_count"] = 12
    data["cells"][answer]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": "lone \ud800 and NUL \x00"},
        {"output_type": "display_data", "metadata": {}, "data": {"application/json": json.loads(nested(500))}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/json": [[]] * 2 * intake.MAX_VALUES}},
    ]
    submit(course, STUDENT, {**honest(course), Q6: json.dumps(data).encode()})
    staged = stage(course)
    assert outcomes.recorded(staged[Q6]) == []
    assert staged[Q6].cells[answer].outputs == [] and staged[Q6].cells[answer].execution_count is None
    assert staged_bytes(course, Q6) == nbformat.writes(solved(course, Q6)).encode() + b"\n"


def test_a_byte_order_mark_is_removed_and_recorded(course):
    submitted = nbformat.writes(with_marker(course, Q6)).encode() + b"\n"
    submit(course, STUDENT, {**honest(course), Q6: b"\xef\xbb\xbf" + submitted})
    staged = stage(course)
    events = outcomes.recorded(staged[Q6])
    assert [event.reason.value for event in events] == ["invalid"] and "byte-order mark" in events[0].detail
    assert staged[Q6].cells == with_marker(course, Q6).cells


def test_malformed_grading_metadata_is_removed_and_recorded(course):
    data = q6_data(course)
    answer, test = cell_index(data, "q6-gradient-answer"), cell_index(data, "q6_gradient")
    data["cells"][answer]["metadata"]["nbgrader"]["grade_id"] = 5
    data["cells"][test]["metadata"]["nbgrader"]["points"] = "all of them"
    data["cells"][answer]["source"] += f"\n{MARKER}"
    submit(course, STUDENT, {**honest(course), Q6: json.dumps(data).encode()})
    staged = stage(course)
    events = outcomes.recorded(staged[Q6])
    assert [event.reason.value for event in events] == ["invalid"]
    assert f"malformed grading metadata in cells {answer}, {test}, removed" in events[0].detail
    cells = staged[Q6].cells
    assert "nbgrader" not in cells[answer].metadata and "nbgrader" not in cells[test].metadata
    assert MARKER in cells[answer].source
    release = release_cells(course, Q6)
    assert all(cells[i].metadata == release[i].metadata for i in range(len(release)) if i not in (answer, test))
    assert_own(course, [Q7, Q8, Q9])


def test_an_event_a_student_wrote_is_not_kept(course):
    nb = solved(course, Q6)
    outcomes.record(nb, outcomes.Outcome(outcomes.Reason.MISSING, "pre-seeded by the student"))
    submit(course, STUDENT, {**honest(course), Q6: nb})
    assert outcomes.recorded(stage(course)[Q6]) == []


# ---------------------------------------------------------------------- not a regular file at all
def make_fifo(path: Path, course) -> None:
    os.mkfifo(path)


def make_folder(path: Path, course) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("not a notebook")


def make_link_to_source(path: Path, course) -> None:
    path.symlink_to(course.source_dir / path.name)  # the instructor's notebook, solutions and hidden tests


def make_link_to_dev_zero(path: Path, course) -> None:
    path.symlink_to("/dev/zero")


def make_dangling_link(path: Path, course) -> None:
    path.symlink_to(path.parent / "nowhere")


def make_socket(path: Path, course) -> None:
    server = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(path.parent)  # a socket's path is limited to 108 bytes: bind it by its name alone
    try:
        server.bind(path.name)
    finally:
        os.chdir(cwd)
        server.close()


NOT_REGULAR = {
    "named pipe": (make_fifo, "is a named pipe, not a regular file"),
    "folder": (make_folder, "is a folder, not a regular file"),
    "link to the source notebook": (make_link_to_source, "is a symbolic link, not a regular file"),
    "link to /dev/zero": (make_link_to_dev_zero, "is a symbolic link, not a regular file"),
    "dangling link": (make_dangling_link, "is a symbolic link, not a regular file"),
    "socket": (make_socket, "is a socket, not a regular file"),
}


@pytest.mark.parametrize("case", list(NOT_REGULAR))
def test_something_not_a_file_named_like_a_notebook_is_refused(course, case):
    make, phrase = NOT_REGULAR[case]
    submit(course, STUDENT, {**honest(course), Q6: None})
    make(folder_of(course) / f"{Q6}.ipynb", course)
    staged = stage(course)
    assert_blank(course, staged, Q6, "invalid", f"{Q6}.ipynb {phrase}", "graded as if left blank")
    assert_own(course, [Q7, Q8, Q9])


def test_a_notebook_under_its_name_in_a_subfolder_is_never_taken_through_a_linked_folder(course, tmp_path):
    """read_notebook with the student's folder refuses a link anywhere on the way, not only at the end."""
    submit(course, STUDENT, honest(course))
    outside = tmp_path / "outside"
    outside.mkdir()
    nbformat.write(solved(course, Q6), outside / f"{Q6}.ipynb")
    (folder_of(course) / "linked").symlink_to(outside)
    with pytest.raises(intake.Unreadable, match="linked is a symbolic link"):
        intake.read_notebook(folder_of(course) / "linked" / f"{Q6}.ipynb", course.submitted_dir / STUDENT)
    with pytest.raises(intake.Unreadable, match="outside the student's folder"):
        intake.read_notebook(outside / f"{Q6}.ipynb", course.submitted_dir / STUDENT)


# ------------------------------------------------------------------------------------ small files
COLLECTED = {"timestamp.txt": "2026-11-20 10:00:00.000000 UTC\n", "submission_secret.txt": "9f3c0a7e5b21d4c8\n"}


@pytest.mark.parametrize("name", sorted(COLLECTED))
def test_files_collect_writes_are_copied_when_small_regular_files(course, name):
    """timestamp.txt (late penalties) and submission_secret.txt (release_feedback) travel with the notebooks."""
    submit(course, STUDENT, honest(course))
    (folder_of(course) / name).write_text(COLLECTED[name])
    stage(course)
    copied = staging_of(course) / STUDENT / course.assignment_id / name
    assert copied.read_text() == COLLECTED[name]


def test_files_collect_writes_are_copied_for_a_student_staged_as_an_error(course):
    """A folder that could not be staged is graded as the release, but it is still the student's submission:
    its timestamp and secret go along, so that release_feedback does not fail for the whole class."""
    submit(course, STUDENT, honest(course))
    for name, text in COLLECTED.items():
        (folder_of(course) / name).write_text(text)
    intake.stage_as_error(course, course.submitted_dir / STUDENT, staging_of(course), "something went wrong")
    for name, text in COLLECTED.items():
        assert (staging_of(course) / STUDENT / course.assignment_id / name).read_text() == text


@pytest.mark.parametrize("name", sorted(COLLECTED))
@pytest.mark.parametrize("kind", ["named pipe", "link", "too large", "folder"])
def test_a_collected_file_that_is_not_a_small_regular_file_is_left_behind(course, kind, name, tmp_path):
    submit(course, STUDENT, honest(course))
    path = folder_of(course) / name
    if kind == "named pipe":
        os.mkfifo(path)
    elif kind == "link":
        (tmp_path / "elsewhere.txt").write_text(COLLECTED[name])
        path.symlink_to(tmp_path / "elsewhere.txt")
    elif kind == "too large":
        path.write_text(COLLECTED[name] + " " * intake.MAX_SMALL_FILE_BYTES)
    else:
        path.mkdir()
    stage(course)
    assert not (staging_of(course) / STUDENT / course.assignment_id / name).exists()
    assert_own(course, course.notebook_ids)


def test_copy_small_file_says_why_it_refuses(tmp_path):
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"abc123\n")
    os.mkfifo(folder / "pipe.txt")
    (folder / "link.txt").symlink_to(folder / "secret.txt")
    (folder / "big.txt").write_bytes(b"x" * 65)
    assert promptly(intake.copy_small_file, folder, "secret.txt", tmp_path / "copy.txt", 64) is True
    assert (tmp_path / "copy.txt").read_bytes() == b"abc123\n"
    assert intake.copy_small_file(folder, "absent.txt", tmp_path / "absent.txt") is False
    for name, reason in [("pipe.txt", "named pipe"), ("link.txt", "symbolic link"), ("big.txt", "larger than 64 bytes")]:
        with pytest.raises(intake.Unreadable, match=reason):
            promptly(intake.copy_small_file, folder, name, tmp_path / name, 64)
        assert not (tmp_path / name).exists()
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert intake.copy_small_file(descriptor, "secret.txt", tmp_path / "again.txt") is True
    finally:
        os.close(descriptor)
    assert (tmp_path / "again.txt").read_bytes() == b"abc123\n"


# ----------------------------------------------------------------------- a notebook under another name
def test_a_renamed_notebook_is_found_past_pipes_devices_links_and_linked_folders(course):
    submit(course, STUDENT, {**honest(course), Q9: None})
    folder = folder_of(course)
    os.mkfifo(folder / "a_pipe.ipynb")
    (folder / "b_zero.ipynb").symlink_to("/dev/zero")
    (folder / "c_solution.ipynb").symlink_to(course.source_dir / f"{Q9}.ipynb")  # would match, if followed
    make_socket(folder / "d_socket.ipynb", course)
    (folder / "e_folder.ipynb").mkdir()
    (folder / "a_linked_source").symlink_to(course.source_dir)
    (folder / "sub").mkdir()
    nbformat.write(with_marker(course, Q9), folder / "sub" / "Q9 (copy).ipynb")
    staged = stage(course)
    events = outcomes.recorded(staged[Q9])
    assert events == [outcomes.Outcome(outcomes.Reason.INVALID, f"graded from sub/Q9 (copy).ipynb, which should be {Q9}.ipynb")]
    assert staged[Q9].cells == with_marker(course, Q9).cells
    assert_own(course, [Q6, Q7, Q8])


def test_links_to_the_instructors_notebooks_are_never_searched(course):
    submit(course, STUDENT, {**honest(course), Q9: None})
    folder = folder_of(course)
    (folder / "mine.ipynb").symlink_to(course.source_dir / f"{Q9}.ipynb")
    (folder / "linked").symlink_to(course.source_dir)
    assert_blank(course, stage(course), Q9, "missing", f"no {Q9}.ipynb in the submission")


def test_a_pipe_named_like_the_notebook_does_not_hide_the_renamed_one(course):
    submit(course, STUDENT, {**honest(course), Q9: None})
    os.mkfifo(folder_of(course) / f"{Q9}.ipynb")
    nbformat.write(with_marker(course, Q9), folder_of(course) / "mine.ipynb")
    staged = stage(course)
    [event] = outcomes.recorded(staged[Q9])
    assert event.reason.value == "invalid" and "graded from mine.ipynb" in event.detail and "named pipe" in event.detail
    assert staged[Q9].cells == with_marker(course, Q9).cells


def test_two_renamed_notebooks_are_both_found(course):
    submit(course, STUDENT, {**honest(course), Q8: None, Q9: None})
    nbformat.write(with_marker(course, Q8), folder_of(course) / "eight.ipynb")
    nbformat.write(with_marker(course, Q9), folder_of(course) / "nine.ipynb")
    staged = stage(course)
    assert staged[Q8].cells == with_marker(course, Q8).cells and staged[Q9].cells == with_marker(course, Q9).cells
    assert "graded from eight.ipynb" in outcomes.recorded(staged[Q8])[0].detail
    assert "graded from nine.ipynb" in outcomes.recorded(staged[Q9])[0].detail


def test_a_renamed_notebook_with_an_undecodable_name_is_staged_with_a_readable_note(course):
    submit(course, STUDENT, {**honest(course), Q9: None})
    with open(os.fsencode(folder_of(course)) + b"/nine\xff\n.ipynb", "w") as handle:
        nbformat.write(with_marker(course, Q9), handle)
    staged = stage(course)
    [event] = outcomes.recorded(staged[Q9])
    assert event.detail == f"graded from nine\\xff\\n.ipynb, which should be {Q9}.ipynb"
    assert staged[Q9].cells == with_marker(course, Q9).cells


def put_at_depth(folder: Path, depth: int, nb) -> Path:
    place = folder.joinpath(*[f"level{n}" for n in range(1, depth + 1)])
    place.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, place / "renamed.ipynb")
    return place


def test_the_search_goes_no_deeper_than_its_limit(course):
    submit(course, STUDENT, {**honest(course), Q9: None})
    place = put_at_depth(folder_of(course), intake.SEARCH_MAX_DEPTH, with_marker(course, Q9))
    cells, note = staged_cells_and_note(course)
    assert cells == with_marker(course, Q9).cells and note.startswith("graded from level1/")
    (place / "renamed.ipynb").unlink()
    put_at_depth(folder_of(course), intake.SEARCH_MAX_DEPTH + 1, with_marker(course, Q9))
    assert_blank(course, stage(course), Q9, "missing", "stopped at its limits")


def staged_cells_and_note(course):
    staged = stage(course)
    events = outcomes.recorded(staged[Q9])
    return staged[Q9].cells, events[0].detail if events else None


@pytest.fixture
def deep_tree(course):
    """submitted/student/autograd_basics/d/d/d/... 1200 levels deep (past Python's recursion limit, which a
    recursive walk such as rglob or os.walk would hit), without Q9; removed after the test by rm (pytest's own
    clean-up recurses, and would fail on it)."""
    submit(course, STUDENT, {**honest(course), Q9: None})
    top = folder_of(course)
    descriptor = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):  # built relative to descriptors, as a tool that makes such a tree would
            os.mkdir("d", dir_fd=descriptor)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
    finally:
        os.close(descriptor)
    yield
    subprocess.run(["rm", "-rf", "--", str(top / "d")], check=True)  # rm walks it without recursion


def test_a_folder_tree_a_thousand_levels_deep_is_not_walked(course, deep_tree):
    assert_blank(course, stage(course), Q9, "missing", f"no {Q9}.ipynb in the submission", "stopped at its limits")
    assert_own(course, [Q6, Q7, Q8])


def test_the_search_looks_at_a_bounded_number_of_entries(course, monkeypatch):
    submit(course, STUDENT, {**honest(course), Q9: None})
    folder = folder_of(course)
    for n in range(300):
        (folder / f"junk{n:03d}.txt").touch()
    (folder / "sub").mkdir()
    nbformat.write(with_marker(course, Q9), folder / "sub" / "renamed.ipynb")
    assert staged_cells_and_note(course)[0] == with_marker(course, Q9).cells  # within the usual limit: found
    monkeypatch.setattr(intake, "SEARCH_MAX_ENTRIES", 100)
    listed = []
    real_scandir = os.scandir

    def counting_scandir(path):
        for entry in real_scandir(path):
            listed.append(entry.name)
            yield entry

    def scandir(path):  # count what is listed of the submission (not the staging folder it clears)
        submitted = isinstance(path, int) and os.readlink(f"/proc/self/fd/{path}").startswith(str(course.submitted_dir))
        return _Closing(counting_scandir(path)) if submitted else real_scandir(path)

    monkeypatch.setattr(intake.os, "scandir", scandir)
    assert_blank(course, stage(course), Q9, "missing", "stopped at its limits")
    # 100 entries, and at most one more per folder listed (the one that shows the budget is spent)
    assert 100 < len(listed) <= 102, listed


class _Closing:
    """A generator that can be used like os.scandir's iterator (in a with statement)."""

    def __init__(self, generator):
        self.generator = generator

    def __enter__(self):
        return self.generator

    def __exit__(self, *exc):
        self.generator.close()


def test_the_search_reads_a_bounded_number_of_candidates(course, monkeypatch):
    submit(course, STUDENT, {**honest(course), Q9: None})
    folder = folder_of(course)
    for n in range(5):
        nbformat.write(solved(course, Q6), folder / f"decoy{n}.ipynb")
    nbformat.write(with_marker(course, Q9), folder / "z_mine.ipynb")
    assert staged_cells_and_note(course)[0] == with_marker(course, Q9).cells
    monkeypatch.setattr(intake, "SEARCH_MAX_FILES", 3)
    assert_blank(course, stage(course), Q9, "missing", "stopped at its limits")
    monkeypatch.setattr(intake, "SEARCH_MAX_FILES", 20)
    monkeypatch.setattr(intake, "SEARCH_MAX_BYTES", 3 * (folder / "decoy0.ipynb").stat().st_size)
    assert_blank(course, stage(course), Q9, "missing", "stopped at its limits")


def test_a_folder_that_cannot_be_read_is_passed_over(course, monkeypatch):
    """chmod 000 does not stop root, who may run this suite: the folder's listing fails as it would then."""
    submit(course, STUDENT, {**honest(course), Q8: None, Q9: None})
    folder = folder_of(course)
    (folder / "locked").mkdir()
    (folder / "open").mkdir()
    nbformat.write(with_marker(course, Q8), folder / "locked" / "eight.ipynb")
    nbformat.write(with_marker(course, Q9), folder / "open" / "nine.ipynb")
    (folder / "locked").chmod(0)
    real_scandir = os.scandir

    def denied(path):
        if isinstance(path, int) and os.readlink(f"/proc/self/fd/{path}").endswith("/locked"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(intake.os, "scandir", denied)
    try:
        staged = stage(course)
    finally:
        (folder / "locked").chmod(0o755)
    assert_blank(course, staged, Q8, "missing", f"no {Q8}.ipynb in the submission")
    assert staged[Q9].cells == with_marker(course, Q9).cells


# --------------------------------------------------------------------------------- a whole folder
def test_no_assignment_folder_means_every_notebook_is_missing(course):
    (course.submitted_dir / STUDENT).mkdir(parents=True)
    staged = stage(course)
    for notebook_id in course.notebook_ids:
        assert_blank(course, staged, notebook_id, "missing", f"no {notebook_id}.ipynb in the submission")


@pytest.mark.parametrize("kind", ["named pipe", "link to another student", "file"])
def test_an_assignment_folder_that_is_not_a_folder_makes_every_notebook_invalid(course, kind):
    other = submit(course, "other", honest(course))
    (course.submitted_dir / STUDENT).mkdir(parents=True)
    folder = folder_of(course)
    if kind == "named pipe":
        os.mkfifo(folder)
    elif kind == "link to another student":
        folder.symlink_to(other)
    else:
        folder.write_bytes(b"not a folder")
    staged = stage(course)
    for notebook_id in course.notebook_ids:
        assert_blank(course, staged, notebook_id, "invalid", f"{STUDENT}/{course.assignment_id} is", "graded as if left blank")


def test_a_student_folder_that_is_a_link_makes_every_notebook_invalid(course):
    other = submit(course, "other", honest(course)).parent
    (course.submitted_dir / STUDENT).symlink_to(other)
    staged = stage(course)
    for notebook_id in course.notebook_ids:
        assert_blank(course, staged, notebook_id, "invalid", f"{STUDENT} is a symbolic link")


def test_an_assignment_folder_that_cannot_be_opened_makes_every_notebook_invalid(course, monkeypatch):
    submit(course, STUDENT, honest(course))
    real_open = os.open

    def denied(path, flags, mode=0o777, *, dir_fd=None):
        if path == course.assignment_id and dir_fd is not None:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(intake.os, "open", denied)
    staged = stage(course)
    for notebook_id in course.notebook_ids:
        assert_blank(course, staged, notebook_id, "invalid", "cannot be read (Permission denied)")


def test_a_student_whose_staging_fails_is_graded_as_blank_with_an_error_and_the_others_go_on(course, monkeypatch):
    for student in ("a", "b", "c"):
        submit(course, student, honest(course))
    real = grading.stage_student

    def fails_for_b(course_, student_dir, staging):
        if student_dir.name == "b":
            raise OSError(errno.EIO, "Input/output error")
        real(course_, student_dir, staging)

    monkeypatch.setattr(grading, "stage_student", fails_for_b)
    promptly(grading.stage_submissions, course, ["a", "b", "c"], staging_of(course))
    for student in ("a", "c"):
        assert_own(course, course.notebook_ids, student)
    staged = {
        notebook_id: nbformat.read(staging_of(course) / "b" / course.assignment_id / f"{notebook_id}.ipynb", 4)
        for notebook_id in course.notebook_ids
    }
    for notebook_id in course.notebook_ids:
        assert_blank(course, staged, notebook_id, "error", "could not be staged", "Input/output error")
