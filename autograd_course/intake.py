"""Take a student's submission as it is and stage a gradable copy of each notebook, recording what was wrong.

The submitted files are only read. A notebook that is missing, unreadable or not a notebook is replaced in the
staging area by the untouched release notebook (so it is graded, earns 0 and gets gradebook rows), and the
reason is recorded in it. Only notebooks are staged: files a student adds (a torch.py, a gradebook.db, an
nbgrader_config.py) never reach the grader.

One file never stops the class. Every notebook is taken on its own: whatever goes wrong while reading, parsing
or staging it makes that notebook ``invalid`` (graded as if left blank) and nothing else. Only regular files
are read, through descriptors opened without following symbolic links and without blocking (a named pipe, a
socket, a device or a folder named like a notebook is refused, never opened for reading), and never more than a
set number of bytes. The search for a notebook saved under another name is bounded in depth, entries, files and
bytes.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import stat
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import nbformat
from nbformat.v4.nbjson import JSONReader
from nbformat.validator import normalize

from . import outcomes
from .course import Course
from .outcomes import Outcome, Reason
from .release import write_canonical

#: the largest notebook file read, outputs and attachments included
MAX_NOTEBOOK_BYTES = 20 * 2**20
#: all cell sources of a notebook together, in characters (outputs are cleared before grading anyway)
MAX_SOURCE_CHARS = 2**20
MAX_CELLS = 1000
#: JSON nesting kept in a notebook (outputs are dropped before this is checked); far below Python's recursion limit
MAX_DEPTH = 64
#: JSON values kept in a notebook (outputs are dropped first); a notebook has a few thousand
MAX_VALUES = 100_000
#: the longest JSON number literal (Python refuses to convert integers of more than 4300 digits)
MAX_NUMBER_CHARS = 1000
MAX_GRADE_ID_CHARS = 100
#: small files that `nbgrader collect` leaves beside the notebooks (timestamp.txt, submission_secret.txt)
MAX_SMALL_FILE_BYTES = 1024
#: what they are for: late penalties read the timestamp; `nbgrader release_feedback` needs both, and the secret
#: names the feedback file that only the student's own `fetch_feedback` can find
COLLECTED_FILES = ("timestamp.txt", "submission_secret.txt")

#: bounds of the search for a notebook saved under another name
SEARCH_MAX_DEPTH = 4  # folder levels below the assignment folder
SEARCH_MAX_ENTRIES = 2000  # folder entries looked at, in all
SEARCH_MAX_FILES = 20  # candidate notebooks read
SEARCH_MAX_BYTES = 2 * MAX_NOTEBOOK_BYTES  # bytes read from candidates, in all

_NO_BLOCK = os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | _NO_BLOCK
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _NO_BLOCK
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_BOM = b"\xef\xbb\xbf"
_BLANK = "graded as if left blank"


class Unreadable(Exception):
    """A submitted file that cannot be taken as a notebook; the message says why, in words for the instructor."""


class NotRegular(Unreadable):
    """There is something by that name, but it is not a regular file (a link, a folder, a pipe, a device)."""


# ------------------------------------------------------------------------------------- safe reading
def shown(name: str) -> str:
    """A file name as it can be written in a note: undecodable bytes and control characters escaped."""
    try:
        raw = name.encode("utf-8", "surrogateescape")  # a file name's undecodable bytes
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= 120 else text[:117] + "..."


def _clean(detail: str) -> str:
    """A note that can always be written to a notebook and to grades.csv: one line, valid Unicode."""
    text = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= 500 else text[:497] + "..."


def _what(mode: int) -> str:
    for test, what in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return what
    return "a special file"


def _size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 and limit % 2**20 == 0 else f"{limit} bytes"


def _single(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise Unreadable(f"{shown(name)} is not a file name")
    return name


def open_folder(name: str | os.PathLike, dir_fd: int | None = None, label: str | None = None) -> int:
    """A descriptor on the folder ``name`` (in ``dir_fd``, or a path), which must not be a symbolic link.

    Raises FileNotFoundError when there is nothing by that name, Unreadable when it is not a folder or cannot be
    opened. The caller closes the descriptor."""
    label = label or shown(os.fspath(name))
    if dir_fd is not None:
        name = _single(os.fspath(name))
    try:
        found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise Unreadable(f"{label} cannot be read ({error.strerror})") from None
    if not stat.S_ISDIR(found.st_mode):
        raise NotRegular(f"{label} is {_what(found.st_mode)}, not a folder")
    try:
        return os.open(name, _FOLDER_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as error:  # replaced since the lstat: by a link (ELOOP) or a file (ENOTDIR)
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotRegular(f"{label} is not a folder") from None
        raise Unreadable(f"{label} cannot be read ({error.strerror})") from None


def read_regular_file(name: str, dir_fd: int, limit: int, label: str | None = None) -> bytes:
    """The content of the regular file ``name`` in the open folder ``dir_fd``, at most ``limit`` bytes.

    Never follows a symbolic link, never blocks (the file is opened with O_NONBLOCK and checked with fstat on
    the opened descriptor before a byte is read, which also closes the race with a swap after the first
    check), and never reads more than ``limit`` + 1 bytes. Raises FileNotFoundError when there is no such
    entry, NotRegular when the entry is not a regular file, Unreadable for any other refusal."""
    label = label or shown(name)
    name = _single(name)
    try:
        found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise Unreadable(f"{label} cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(found.st_mode):  # refused before opening: opening a device can have effects
        raise NotRegular(f"{label} is {_what(found.st_mode)}, not a regular file")
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotRegular(f"{label} is a symbolic link, not a regular file") from None
        raise Unreadable(f"{label} cannot be read ({error.strerror})") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise NotRegular(f"{label} is {_what(opened.st_mode)}, not a regular file")
        if opened.st_size > limit:
            raise Unreadable(f"{label} is larger than {_size(limit)}")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(2**20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise Unreadable(f"{label} is larger than {_size(limit)}")
        return b"".join(chunks)
    except OSError as error:
        raise Unreadable(f"{label} cannot be read ({error.strerror})") from None
    finally:
        os.close(fd)


def copy_small_file(folder: int | os.PathLike, name: str, destination: Path, limit: int = MAX_SMALL_FILE_BYTES) -> bool:
    """Copy the small file ``name`` that `nbgrader collect` leaves in a submission folder (``folder``: an open
    descriptor or a path) to ``destination``, with the care of read_regular_file: a regular file of at most
    ``limit`` bytes, no symbolic link followed, no blocking.

    Returns False when there is no such file; raises Unreadable, saying why, when there is one that cannot be
    taken."""
    try:
        if isinstance(folder, int):
            data = read_regular_file(name, folder, limit)
        else:
            fd = open_folder(folder)
            try:
                data = read_regular_file(name, fd, limit)
            finally:
                os.close(fd)
    except FileNotFoundError:
        return False
    destination.write_bytes(data)
    return True


def copy_collected_files(folder: int | os.PathLike, out_dir: Path) -> None:
    """Stage the files `nbgrader collect` wrote beside the notebooks (COLLECTED_FILES). One that cannot be taken
    is left out: it is not something collect wrote, and the submission is graded as if it had none."""
    for name in COLLECTED_FILES:
        try:
            copy_small_file(folder, name, out_dir / name)
        except Unreadable:
            pass


# ------------------------------------------------------------------------------------------ parsing
class _BadJSON(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _BadJSON(f"the key {json.dumps(key)[:60]} appears twice in one object")
            seen.add(key)
    return result


def _finite(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadJSON(f"a number of more than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _BadJSON(f"the number {text[:40]} is out of range")
    return value


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadJSON(f"an integer of more than {MAX_NUMBER_CHARS} digits")
    return int(text)


def _no_constant(name: str):
    raise _BadJSON(f"{name} is not a JSON number")


def _parse_json(text: str, label: str):
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicates, parse_float=_finite, parse_int=_integer, parse_constant=_no_constant
        )
    except json.JSONDecodeError as error:
        raise Unreadable(f"{label} is not valid JSON ({error.msg}, line {error.lineno})") from None
    except _BadJSON as error:
        raise Unreadable(f"{label} is not valid JSON ({error})") from None
    except RecursionError:
        raise Unreadable(f"{label} is not valid JSON (nested too deeply)") from None
    except ValueError as error:  # e.g. an integer beyond Python's conversion limit
        raise Unreadable(f"{label} is not valid JSON ({str(error)[:120]})") from None


def _is_int(value, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _check_shape(data, label: str) -> None:
    """What the parsing below relies on, and the size limits of what is kept."""
    if not isinstance(data, dict) or data.get("nbformat") != 4 or type(data.get("nbformat")) is not int:
        raise Unreadable(f"{label} is not an nbformat 4 notebook")
    if not _is_int(data.get("nbformat_minor", 0), 0, 99):
        raise Unreadable(f"{label} is not an nbformat 4 notebook (nbformat_minor {str(data.get('nbformat_minor'))[:20]})")
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise Unreadable(f"{label} is not an nbformat 4 notebook (no list of cells)")
    if len(cells) > MAX_CELLS:
        raise Unreadable(f"{label} has more than {MAX_CELLS} cells")
    if not isinstance(data.get("metadata", {}), dict):
        raise Unreadable(f"{label} is not a valid notebook (its metadata is not an object)")
    characters = 0
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise Unreadable(f"{label} is not a valid notebook (cell {index} is not an object)")
        if not isinstance(cell.get("metadata", {}), dict):
            raise Unreadable(f"{label} is not a valid notebook (the metadata of cell {index} is not an object)")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            characters += sum(map(len, source))
        elif isinstance(source, str):
            characters += len(source)
        else:
            raise Unreadable(f"{label} is not a valid notebook (the source of cell {index} is not text)")
    if characters > MAX_SOURCE_CHARS:
        raise Unreadable(f"{label} has more than {MAX_SOURCE_CHARS} characters of code and text in its cells")


def _clear_outputs(data: dict) -> None:
    """Grading clears outputs before it runs a notebook: drop them now, with whatever they hold."""
    for cell in data["cells"]:
        if cell.get("cell_type") == "code":
            if isinstance(cell.get("outputs"), list):
                cell["outputs"] = []
            if "execution_count" in cell:
                cell["execution_count"] = None


def _check_tree(data, label: str) -> None:
    """Every string (keys too) encodable and free of NUL, no deeper nesting than MAX_DEPTH and no more than
    MAX_VALUES values (what follows, the schema validation above all, takes time in proportion to them; a
    container's size is counted before its items are looked at). Iterative, so the check itself cannot hit
    the recursion limit."""
    stack, counted = [(data, 1)], 1
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, label)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise Unreadable(f"{label} nests objects more than {MAX_DEPTH} levels deep")
        counted += len(value)
        if counted > MAX_VALUES:
            raise Unreadable(f"{label} holds more than {MAX_VALUES} JSON values besides its outputs")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, label)
                stack.append((item, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in value)


def _check_text(text: str, label: str) -> None:
    bad = _BAD_CHARACTER.search(text)
    if bad:
        if bad.group() == "\x00":
            raise Unreadable(f"{label} contains a NUL character (\\u0000), which a graded notebook may not hold")
        raise Unreadable(f"{label} contains a lone surrogate (\\u{ord(bad.group()):04x}), which is not text")


@cache
def _grading_metadata_schema():
    """nbgrader's own schema of a cell's ``nbgrader`` metadata (the version the release notebooks use)."""
    import jsonschema
    from nbgrader.nbgraderformat import MetadataValidator

    return jsonschema.Draft4Validator(MetadataValidator().schema)


def _well_formed(schema, meta) -> bool:
    # nbgrader sets no length to a grade_id; those of a release are short, and notes quote them
    return schema.is_valid(meta) and len(meta.get("grade_id", "")) <= MAX_GRADE_ID_CHARS


def _drop_malformed_grading_metadata(nb: nbformat.NotebookNode, label: str) -> list[str]:
    """A cell's grading metadata that does not fit nbgrader's schema (a grade_id that is a number or a list, say)
    is removed, so that what reads it later (the integrity check, nbgrader) never meets it. The cell is then the
    student's own; if it was one of the release's graded cells, the integrity check restores that cell."""
    schema = _grading_metadata_schema()
    dropped = [
        str(index)
        for index, cell in enumerate(nb.cells)
        if "nbgrader" in cell.metadata and not _well_formed(schema, cell.metadata["nbgrader"])
    ]
    for index in dropped:
        del nb.cells[int(index)].metadata["nbgrader"]
    if not dropped:
        return []
    cells = f"cell {dropped[0]}" if len(dropped) == 1 else f"cells {', '.join(dropped[:10])}"
    return [f"{label} had malformed grading metadata in {cells}, removed"]


def parse_notebook(data: bytes, label: str) -> tuple[nbformat.NotebookNode, list[str]]:
    """Take the bytes of a submitted file strictly; return the notebook and the repairs it needed, or raise
    Unreadable. The notebook returned has no outputs and can be written by write_canonical."""
    repairs = []
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
        repairs.append(f"{label} began with a byte-order mark, removed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Unreadable(f"{label} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    notebook = _parse_json(text, label)
    del text, data
    _check_shape(notebook, label)
    _clear_outputs(notebook)
    _check_tree(notebook, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            changes, notebook = normalize(notebook, strip_invalid_metadata=True)
        changes += _repair_cell_ids(notebook)
        if changes:
            repairs.append(f"{label} had {changes} invalid or missing field(s), repaired")
        nb = JSONReader().to_notebook(notebook)  # as nbformat.read makes it: sources joined, transient keys gone
        nbformat.validate(nb)
        repairs += _drop_malformed_grading_metadata(nb, label)
        nbformat.writes(nb).encode("utf-8")  # what staging will write, tried first
    except Exception as error:  # noqa: BLE001 - any schema failure makes the file ungradable
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise Unreadable(f"{label} is not a valid notebook ({first})") from None
    return nb, repairs


def read_notebook(path: Path, student_dir: Path | None = None) -> tuple[nbformat.NotebookNode, list[str]]:
    """Read and parse a submitted file strictly; return the notebook and the repairs it needed, or raise
    Unreadable (FileNotFoundError when there is none).

    With ``student_dir``, the file is read only from inside the student's own folder: neither it nor any folder
    from ``student_dir`` down to it may be a symbolic link (to the instructor's source notebook, say)."""
    path = Path(path)
    if student_dir is None:
        folder, parts = path.parent, [path.name]
    else:
        try:
            parts = list(path.relative_to(student_dir).parts)
        except ValueError:
            raise Unreadable(f"{shown(path.name)} lies outside the student's folder") from None
        folder = Path(student_dir)
        if not parts or ".." in parts:
            raise Unreadable(f"{shown(path.name)} lies outside the student's folder")
    label = shown("/".join(parts[1:] if len(parts) > 1 else parts))
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if student_dir is None else open_folder(folder)
    try:
        for part in parts[:-1]:
            inner = open_folder(part, fd)
            os.close(fd)
            fd = inner
        data = read_regular_file(parts[-1], fd, MAX_NOTEBOOK_BYTES, label)
    finally:
        os.close(fd)
    return parse_notebook(data, label)


def _repair_cell_ids(data: dict) -> int:
    """nbformat 4.5 needs a unique id on every cell; give one to each cell that lost it or shares it."""
    if data.get("nbformat_minor", 0) < 5:
        return 0
    seen, repaired = set(), 0
    for index, cell in enumerate(data["cells"]):
        cell_id = cell.get("id") if isinstance(cell, dict) else None
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen:
            meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell, dict) else None
            grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
            cell_id = str(grade_id) if isinstance(grade_id, str) and grade_id and grade_id not in seen else f"cell-{index}"
            while cell_id in seen:
                cell_id += "-x"
            if isinstance(cell, dict):
                cell["id"] = cell_id
            repaired += 1
        seen.add(cell_id)
    return repaired


def _answer_ids(nb) -> set[str]:
    ids = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and meta.get("solution") and isinstance(meta.get("grade_id"), str):
            ids.add(meta["grade_id"])
    return ids


# ----------------------------------------------------------------------------- the renamed notebook
@dataclass
class _Budget:
    entries: int = field(default_factory=lambda: SEARCH_MAX_ENTRIES)
    files: int = field(default_factory=lambda: SEARCH_MAX_FILES)
    bytes: int = field(default_factory=lambda: SEARCH_MAX_BYTES)
    cut_short: bool = False  # some of the folder was left unsearched


def _candidates(fd: int, prefix: str, depth: int, skip: set[str], budget: _Budget):
    """(label, folder descriptor, name) of each regular ``*.ipynb`` file under the open folder ``fd``, folders
    before their subfolders and names in order, within the budget; symbolic links are never followed and
    folders that cannot be read are passed over."""
    try:
        with os.scandir(fd) as listing:
            entries = []
            for entry in listing:
                if budget.entries <= 0:
                    budget.cut_short = True
                    break
                budget.entries -= 1
                entries.append(entry)
    except OSError:
        return
    entries.sort(key=lambda entry: entry.name)
    folders = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != ".ipynb_checkpoints":
                    folders.append(entry.name)
            elif entry.name.endswith(".ipynb") and entry.name not in skip and entry.is_file(follow_symlinks=False):
                yield shown(prefix + entry.name), fd, entry.name
        except OSError:
            continue
    if depth >= SEARCH_MAX_DEPTH:
        budget.cut_short = budget.cut_short or bool(folders)
        return
    for name in folders:
        try:
            inner = open_folder(name, fd)
        except (Unreadable, OSError):
            continue
        try:
            yield from _candidates(inner, f"{prefix}{name}/", depth + 1, set(), budget)
        finally:
            os.close(inner)


def _find_renamed(
    folder_fd: int, wanted: dict[str, set[str]], expected_names: set[str]
) -> tuple[dict[str, tuple[str, nbformat.NotebookNode, list[str]]], bool]:
    """A notebook saved under another name still carries its answer cells' ids: find, for each notebook id in
    ``wanted`` (with its release's answer ids), the first candidate that has them all. Each candidate is read
    once, whatever the number of notebooks looked for. Also says whether the search was cut short by its
    bounds."""
    found: dict[str, tuple[str, nbformat.NotebookNode, list[str]]] = {}
    looking = {notebook_id: ids for notebook_id, ids in wanted.items() if ids}
    budget = _Budget()
    if not looking:
        return found, False
    candidates = _candidates(folder_fd, "", 0, expected_names, budget)
    try:
        for label, fd, name in candidates:
            if budget.files <= 0 or budget.bytes <= 0:
                budget.cut_short = True
                break
            budget.files -= 1
            try:
                data = read_regular_file(name, fd, min(MAX_NOTEBOOK_BYTES, budget.bytes), label)
                budget.bytes -= len(data)
                nb, repairs = parse_notebook(data, label)
                ids = _answer_ids(nb)
            except Exception:  # noqa: BLE001, S112 - a candidate that cannot be read is not the notebook
                continue
            for notebook_id, answer_ids in list(looking.items()):
                if answer_ids <= ids:
                    found[notebook_id] = (label, nb, repairs)
                    del looking[notebook_id]
                    break
            if not looking:
                break
    finally:
        candidates.close()
    return found, budget.cut_short


# ---------------------------------------------------------------------------------------- staging
@dataclass
class _Taken:
    nb: nbformat.NotebookNode | None = None
    kind: Reason | None = None
    detail: str | None = None
    look_elsewhere: bool = False


def _take(folder_fd: int, name: str) -> _Taken:
    try:
        data = read_regular_file(name, folder_fd, MAX_NOTEBOOK_BYTES)
    except FileNotFoundError:
        return _Taken(kind=Reason.MISSING, detail=f"no {name} in the submission", look_elsewhere=True)
    except NotRegular as refused:
        return _Taken(kind=Reason.INVALID, detail=f"{refused}; {_BLANK}", look_elsewhere=True)
    except Unreadable as error:
        return _Taken(kind=Reason.INVALID, detail=f"{error}; {_BLANK}")
    try:
        nb, repairs = parse_notebook(data, name)
    except Unreadable as error:
        return _Taken(kind=Reason.INVALID, detail=f"{error}; {_BLANK}")
    return _Taken(nb, Reason.INVALID if repairs else None, "; ".join(repairs) or None)


def _take_all(folder_fd: int, out_dir: Path, releases: dict[str, Path]) -> dict[str, _Taken]:
    """Each notebook of the course (the keys of ``releases``) as found in the open assignment folder."""
    copy_collected_files(folder_fd, out_dir)
    taken: dict[str, _Taken] = {}
    for notebook_id in releases:
        name = f"{notebook_id}.ipynb"
        try:
            taken[notebook_id] = _take(folder_fd, name)
        except Exception as error:  # noqa: BLE001 - one notebook's problem is that notebook's alone
            taken[notebook_id] = _Taken(kind=Reason.INVALID, detail=f"{name} could not be read ({_error(error)}); {_BLANK}")
    elsewhere = [notebook_id for notebook_id, result in taken.items() if result.look_elsewhere]
    if elsewhere:
        try:
            wanted = {notebook_id: _answer_ids(nbformat.read(releases[notebook_id], 4)) for notebook_id in elsewhere}
            expected = {f"{notebook_id}.ipynb" for notebook_id in releases}
            renamed, cut_short = _find_renamed(folder_fd, wanted, expected)
        except Exception:  # noqa: BLE001 - the search is a courtesy: without it, the notebooks stay as found
            renamed, cut_short = {}, False
        for notebook_id in elsewhere:
            if notebook_id in renamed:
                label, nb, repairs = renamed[notebook_id]
                detail = f"graded from {label}, which should be {notebook_id}.ipynb"
                if taken[notebook_id].kind is Reason.INVALID:  # something that is not a file has the right name
                    detail += f" ({(taken[notebook_id].detail or '').removesuffix('; ' + _BLANK)})"
                taken[notebook_id] = _Taken(nb, Reason.INVALID, "; ".join([detail, *repairs]))
            elif cut_short:
                result, suffix = taken[notebook_id], f"; {_BLANK}"
                before = result.detail or ""
                result.detail = (
                    before.removesuffix(suffix)
                    + " (the search for it under another name stopped at its limits: too many files or folders)"
                    + (suffix if before.endswith(suffix) else "")
                )
    return taken


def _error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _stage(path: Path, release_path: Path, taken: _Taken) -> None:
    """Write the notebook taken, or, if it cannot be written, the release in its place; record the outcome."""
    kind, detail = taken.kind, taken.detail
    if taken.nb is not None:
        try:
            nb = taken.nb
            outcomes.forget(nb)
            if kind:
                outcomes.record(nb, Outcome(kind, _clean(detail or "")))
            write_canonical(path, nb)
            return
        except Exception as error:  # noqa: BLE001 - the notebook is then graded as if left blank
            kind, detail = Reason.INVALID, f"{path.name} could not be staged ({_error(error)}); {_BLANK}"
    stage_release(path, release_path, kind, detail)


def stage_release(path: Path, release_path: Path, kind: Reason | None, detail: str | None) -> None:
    """Stage the untouched release notebook at ``path``, with the outcome ``kind`` and its note."""
    nb = nbformat.read(release_path, 4)
    outcomes.forget(nb)
    if kind:
        outcomes.record(nb, Outcome(kind, _clean(detail or "")))
    write_canonical(path, nb)


def _fresh_out_dir(course: Course, student_dir: Path, staging_root: Path) -> Path:
    out_dir = staging_root / student_dir.name / course.assignment_id
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    return out_dir


def stage_student(course: Course, student_dir: Path, staging_root: Path) -> None:
    """Write ``staging_root/<student>/<assignment>/<notebook>.ipynb`` for every notebook of the course.

    Nothing a student put in their folder makes this raise: a problem with one notebook is recorded in that
    notebook, and a folder that cannot be read is recorded in each notebook."""
    out_dir = _fresh_out_dir(course, student_dir, staging_root)
    releases = {notebook_id: course.release_dir / f"{notebook_id}.ipynb" for notebook_id in course.notebook_ids}
    assignment = course.assignment_id
    everything: _Taken | None = None
    taken: dict[str, _Taken] = {}
    try:
        student_fd = open_folder(student_dir, label=shown(student_dir.name))
        try:
            folder_fd = open_folder(assignment, student_fd, label=f"{shown(student_dir.name)}/{assignment}")
        finally:
            os.close(student_fd)
    except FileNotFoundError:
        everything = _Taken(kind=Reason.MISSING)
    except Exception as error:  # noqa: BLE001 - the folder cannot be read: every notebook is graded as blank
        reason = str(error) if isinstance(error, Unreadable) else f"the submission cannot be read ({_error(error)})"
        everything = _Taken(kind=Reason.INVALID, detail=f"{reason}; {_BLANK}")
    else:
        try:
            taken = _take_all(folder_fd, out_dir, releases)
        except Exception as error:  # noqa: BLE001 - each notebook's own problems are caught inside: this is not one
            everything = _Taken(kind=Reason.INVALID, detail=f"the submission cannot be read ({_error(error)}); {_BLANK}")
        finally:
            os.close(folder_fd)
    for notebook_id, release_path in releases.items():
        result = taken.get(notebook_id) or everything
        if result is None:  # _take_all takes every notebook, or raises and sets everything
            raise RuntimeError(f"{notebook_id}.ipynb was neither taken nor refused")
        if result.kind is Reason.MISSING and result.detail is None:
            result = _Taken(kind=Reason.MISSING, detail=f"no {notebook_id}.ipynb in the submission")
        _stage(out_dir / f"{notebook_id}.ipynb", release_path, result)


def stage_as_error(course: Course, student_dir: Path, staging_root: Path, detail: str) -> None:
    """Stage every notebook of a student whose submission could not be staged at all as the release, with an
    ``error`` outcome saying why: the student is graded (0) and gets a row, and the run goes on."""
    out_dir = _fresh_out_dir(course, student_dir, staging_root)
    try:
        # still the student's own submission: its timestamp counts, and its feedback can be released
        student_fd = open_folder(student_dir)
        try:
            folder_fd = open_folder(course.assignment_id, student_fd)
        finally:
            os.close(student_fd)
        try:
            copy_collected_files(folder_fd, out_dir)
        finally:
            os.close(folder_fd)
    except Exception:  # noqa: BLE001, S110 - the folder is what could not be staged; these files are a courtesy
        pass
    for notebook_id in course.notebook_ids:
        stage_release(out_dir / f"{notebook_id}.ipynb", course.release_dir / f"{notebook_id}.ipynb", Reason.ERROR, detail)
