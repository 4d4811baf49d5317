"""`autograd-course release` through the real command: it regenerates release/ from source/ byte-for-byte as
committed, every time, and a broken source notebook stops it with a clear message (CONTRACT.md: "0, or
non-zero with a clear message")."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_helpers import NOTEBOOKS, copy_course

pytestmark = pytest.mark.slow

COMMAND = str(Path(sys.executable).parent / "autograd-course")


def release(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([COMMAND, "release"], cwd=root, capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def regenerated(module_course):
    """release/ as committed (the checkout's, copied into the scratch course), then what `release` writes into an
    emptied release/, twice in a row."""
    course = module_course
    committed = snapshot(course.release_dir)
    runs = []
    for _ in range(2):
        shutil.rmtree(course.release_dir)
        result = release(course.root)
        runs.append((result, snapshot(course.release_dir) if course.release_dir.is_dir() else {}))
    return committed, runs


def test_the_committed_release_has_the_four_notebooks(regenerated):
    committed, _ = regenerated
    assert sorted(committed) == [f"{notebook_id}.ipynb" for notebook_id in NOTEBOOKS]


@pytest.mark.parametrize("attempt", [0, 1], ids=["first", "second"])
def test_release_exits_0_and_regenerates_the_committed_files_byte_for_byte(regenerated, attempt):
    committed, runs = regenerated
    result, written = runs[attempt]
    assert result.returncode == 0, result.stderr
    assert sorted(written) == sorted(committed)
    for name in committed:
        assert written[name] == committed[name], f"{name} differs from the committed release"


def test_released_notebooks_end_with_a_newline_and_hold_no_outputs(regenerated):
    _, runs = regenerated
    for name, data in runs[0][1].items():
        assert data.endswith(b"\n"), name
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], (name, cell.source[:80])
                assert cell.execution_count is None, (name, cell.source[:80])


# ------------------------------------------------------------------------------------------ broken source
BROKEN = "q7_weights"


@pytest.fixture(scope="module")
def broken_source(tmp_path_factory):
    """A source notebook that is not JSON (saved half-way); release/ holds the last good release."""
    course = copy_course(tmp_path_factory.mktemp("broken") / "course")
    before = snapshot(course.release_dir)
    (course.source_dir / f"{BROKEN}.ipynb").write_bytes(b'{"cells": [ {"cell_type": "markdown", "sou')
    result = release(course.root)
    after = snapshot(course.release_dir) if course.release_dir.is_dir() else {}
    return result, before, after


def test_broken_source_exits_non_zero_with_an_autograd_course_message(broken_source):
    result, _, _ = broken_source
    assert result.returncode != 0
    assert result.stderr.startswith("autograd-course: "), result.stderr


def test_broken_source_message_names_the_notebook_without_a_traceback(broken_source):
    result, _, _ = broken_source
    assert "Traceback (most recent call last)" not in result.stderr, result.stderr
    assert BROKEN in result.stderr, result.stderr


def test_broken_source_leaves_the_existing_release_unchanged(broken_source):
    _, before, after = broken_source
    assert sorted(after) == sorted(before)
    for name in before:
        assert after[name] == before[name], name
