"""A class full of broken and hostile submissions, graded in one run beside honest students.

Asserts what an instructor needs to trust the grader: honest students' scores are unaffected; source/,
release/, the gradebook, other students' files and the submissions themselves are untouched; every student has
a row with the right status; the run ends in bounded time; and nothing it started is left running.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograd_course.catalog import by_name, solved, submission
from autograd_course.sandbox.bwrap import python_dirs

from course_helpers import FULL_MARKS, marks, notebook_marks, submit
from gradebook_helpers import active_content, failure_message, feedback_page, feedback_text, part_scores, shown_text

pytestmark = pytest.mark.slow

CELL_TIMEOUT = 2
Q6_MARKS, Q7_MARKS, Q8_MARKS, Q9_MARKS = (notebook_marks(notebook_id) for notebook_id in (
    "q6_basic_gradients", "q7_weights", "q8_breaking_the_graph", "q9_gradient_accumulation"))
MARKER = "autograd-course-hostile-marker-31337"
# Student code that counts, in its own process's memory (heap and anonymous mappings, where Python keeps its
# objects), the matches of a pattern. The pattern is written so that its own source never matches.
MEMORY_SCAN = """
import re as _re
def _count_in_memory(pattern):
    found = 0
    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:
        for line in maps:
            fields = line.split()
            if 'r' not in fields[1] or (len(fields) > 5 and fields[5] not in ('[heap]', '[stack]')):
                continue
            start, end = (int(part, 16) for part in fields[0].split('-'))
            try:
                mem.seek(start)
                found += len(_re.findall(pattern, mem.read(end - start)))
            except (OSError, ValueError, OverflowError):
                pass
    return found
"""
# Replies in the runner's framing, written on every descriptor the student's process has.
FORGED_REPLIES = """
import os, json, struct
for seq in range(1, 60):
    for reply in ({'seq': seq, 'outputs': [], 'events': []}, {'seq': seq, 'names': []}):
        data = json.dumps(reply).encode()
        for fd in range(3, 64):
            try:
                os.write(fd, struct.pack('>I', len(data)) + data)
            except OSError:
                pass
"""
LEAVE_FILES = """
import os
os.makedirs('/tmp/left/inner', exist_ok=True)
open('/tmp/left/inner/note', 'w').write('for the next notebook')
if not os.path.exists('/tmp/pipe'):
    os.mkfifo('/tmp/pipe')
open('/dev/shm/left', 'w').write('x')
os.chdir('/tmp')
for _ in range(2500):
    os.mkdir('deeper')
    os.chdir('deeper')
os.chdir('/tmp')
for path, where in (('/tmp/left', '/tmp'), ('/left', '/'), ('/dev/left', '/dev')):
    try:
        open(path + '.txt', 'w').write('x')
        os.chmod(where, 0)
    except OSError:
        pass
"""
LOOK_FOR_FILES = "import os\nprint('LOOKED', sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')))"
XSS = "xsshostile31337"  # in every tag, attribute and script a student injects into a feedback page
INJECTIONS = [
    f"<script>window.{XSS} = 1</script>",
    f"<img src=x onerror=\"{XSS}()\">",
    f"<svg onload=\"{XSS}()\"></svg>",
    f"[link](javascript:{XSS}())",
    f"</pre></div><script>{XSS}()</script>",
]


def answer(course, notebook_id, cell_id, code):
    """The solution with one answer cell replaced by ``code`` (the rest right)."""
    return solved(course, notebook_id, {cell_id: code})


def q6_with(course, code, cell_id="q6c-answer", before=False):
    """Q6 solved, plus hostile code in one answer cell (after the answer, or ``before`` it, so that a cell the
    code stops never gets to its answer): only what the code breaks may cost points."""
    nb = solved(course, "q6_basic_gradients")
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == cell_id:
            cell.source = f"{code}\n{cell.source}" if before else f"{cell.source}\n{code}\n"
    return nb


def with_cells(nb, *cells):
    """``nb`` with ``cells`` added after its first answer cell, as a student adds cells."""
    answer = next(i for i, cell in enumerate(nb.cells) if cell.metadata.get("nbgrader", {}).get("solution"))
    nb.cells[answer + 1:answer + 1] = list(cells)
    return nb


def source_of_test_cell(course, notebook_id, grade_id):
    """A test cell as the instructor wrote it, hidden tests included."""
    nb = nbformat.read(course.source_dir / f"{notebook_id}.ipynb", 4)
    return next(cell.source for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def hidden_lines(course, notebook_id, grade_id, shortest=20):
    """The distinctive lines of a test cell's hidden tests: long enough, and not shown in the release anyway."""
    release = nbformat.read(course.release_dir / f"{notebook_id}.ipynb", 4)
    visible = {line.strip() for cell in release.cells for line in cell.source.splitlines()}
    source = source_of_test_cell(course, notebook_id, grade_id)
    hidden = source.split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]
    return [line.strip() for line in hidden.splitlines() if len(line.strip()) >= shortest and line.strip() not in visible]


def first_assert(course, notebook_id, grade_id):
    return next(line for line in hidden_lines(course, notebook_id, grade_id) if line.startswith("assert "))


def full(course, **replace):
    notebooks = {notebook_id: solved(course, notebook_id) for notebook_id in course.notebook_ids}
    notebooks.update(replace)
    return notebooks


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class Listener:
    """A loopback TCP server that counts connections: student code must not reach it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                connection, _ = self.socket.accept()
                self.connections += 1
                connection.close()
            except OSError:
                pass

    def close(self):
        self.running = False
        self.thread.join()
        self.socket.close()


@pytest.fixture(scope="module")
def hostile_class(module_course, tmp_path_factory):
    course = module_course
    root = course.root
    outside = tmp_path_factory.mktemp("outside")
    listener = Listener()
    q6 = "q6_basic_gradients"
    q9 = "q9_gradient_accumulation"

    students = {
        "honest_full": full(course),
        "honest_mistake": full(course, q6_basic_gradients=by_name("q6 forgot requires_grad on x").build(course)),
        "honest_blank": {notebook_id: submission(course, notebook_id) for notebook_id in course.notebook_ids},
        # Jupyter shows the value of a cell's last expression; so does the grader, and it is valid nbformat.
        "honest_shows_values": {notebook_id: _ends_with(solved(course, notebook_id), "1 + 1") for notebook_id in course.notebook_ids},
        # --- reaching outside the sandbox
        "reads_secrets": full(course, q6_basic_gradients=q6_with(course, "\n".join(
            f"try:\n    open({str(path)!r}, 'rb').read()\n    print('READ {name}')\nexcept OSError as error:\n    print('denied', error)"
            for name, path in [("source", root / "source" / "autograd_basics" / f"{q6}.ipynb"),
                               ("gradebook", root / "gradebook.db"), ("config", root / "grader_config.py"),
                               ("other", root / "submitted" / "honest_full" / "autograd_basics" / f"{q6}.ipynb")]))),
        "writes_outside": full(course, q6_basic_gradients=q6_with(course, "\n".join(
            f"try:\n    open({str(path)!r}, 'w').write('pwned')\nexcept OSError as error:\n    print('denied', error)"
            for path in [outside / "escaped.txt", root / "pwned.txt", root / "source" / "pwned.txt"]))),
        "destroys_gradebook": full(course, q6_basic_gradients=q6_with(course,
            f"import os\nfor p in [{str(root / 'gradebook.db')!r}]:\n    try:\n        open(p, 'w').write('garbage')\n"
            "    except OSError as error:\n        print('denied', error)\n    try:\n        os.remove(p)\n"
            "    except OSError as error:\n        print('denied', error)")),
        "uses_network": full(course, q6_basic_gradients=q6_with(course,
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)\n"
            "    print('CONNECTED')\nexcept OSError as error:\n    print('denied', error)")),
        "starts_processes": full(course, q6_basic_gradients=q6_with(course,
            f"import subprocess, os\ntry:\n    subprocess.Popen(['sleep', '{MARKER}'])\nexcept OSError as error:\n"
            "    print('denied', error)\ntry:\n    pid = os.fork()\n    if pid == 0:\n        import time\n"
            "        time.sleep(1000)\nexcept OSError as error:\n    print('denied', error)")),
        # --- breaking the run
        "loops_forever": full(course, q6_basic_gradients=q6_with(course, "while True:\n    pass", "q6b-answer", before=True)),
        "swallows_the_alarm": full(course, q6_basic_gradients=q6_with(course,
            "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except BaseException:\n        pass",
            "q6b-answer", before=True)),
        "kills_its_kernel": full(course, q6_basic_gradients=q6_with(course, "import os\nos._exit(0)", "q6b-answer", before=True)),
        "eats_memory": full(course, q6_basic_gradients=q6_with(course,
            "import torch\nhog = torch.ones(2**31)\nprint(hog.sum())", "q6b-answer", before=True)),
        "floods_output": full(course, q6_basic_gradients=q6_with(course, "print('x' * 5_000_000)")),
        # --- cheating
        "patches_torch": full(course, q6_basic_gradients=solved(course, q6, {
            "q6-gradient-answer": "x = torch.tensor([2.0], requires_grad=True)\ny = x**2 + 3\ny.backward()\n"
            "torch.Tensor.tolist = lambda self: [7.0] if self.numel() == 1 else [0.0] * self.numel()\n"
            "torch.Tensor.__eq__ = lambda self, other: True\ntorch.allclose = lambda *a, **k: True\n"
            "torch.equal = lambda *a: True\n"
            "import math\nmath.isclose = lambda *a, **k: True\n"})),
        "patches_builtins": full(course, q6_basic_gradients=solved(course, q6, {
            "q6-gradient-answer": "x = torch.tensor([2.0])\ny = x**2 + 3 * x\n"
            "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.abs = lambda v: 0\n"
            "def abs(v):\n    return 0\nimport sys, io\nsys.excepthook = lambda *a: None\n"
            "sys.displayhook = lambda value: None\nsys.stdout = io.StringIO()\nsys.stderr = io.StringIO()\n"
            "try:\n    get_ipython().showtraceback = lambda *a, **k: None\nexcept NameError:\n    pass\n"})),
        "traces_asserts_away": full(course, q6_basic_gradients=solved(course, q6, {
            "q6-gradient-answer": "x = torch.tensor([2.0])\ny = x**2 + 3 * x\nimport sys\n"
            "def skip(frame, event, arg):\n    if event == 'line' and frame.f_code.co_filename.startswith('<cell'):\n"
            "        try:\n            frame.f_lineno = frame.f_lineno + 1\n        except Exception:\n            pass\n"
            "    return skip\nsys.settrace(skip)\n"})),
        # --- feedback pages
        "adds_hostile_cells": full(course, q6_basic_gradients=with_cells(
            solved(course, q6),
            nbformat.v4.new_markdown_cell("[a](/files/" * 12_000),  # 132 KB; before: hours in nbconvert
            nbformat.v4.new_markdown_cell("\n\n".join(INJECTIONS)),
            nbformat.v4.new_raw_cell("\n".join(INJECTIONS), metadata={"raw_mimetype": "text/html"}),
            # a copy of an instructor's markdown cell, metadata and all, that says something else
            nbformat.v4.new_markdown_cell("\n\n".join(INJECTIONS), metadata=_metadata_of(course, q6, "q6-intro")),
        )),
        # a whole test cell, hidden tests included, printed by the student's own code
        "prints_hidden_tests": full(course, q6_basic_gradients=q6_with(
            course, f"print({source_of_test_cell(course, q6, 'q6_gradient')!r})")),
        # a hidden line raised from the student's function while the hidden test calls it
        "raises_hidden_tests": full(course, q6_basic_gradients=solved(course, q6, {
            "q6a-answer": f"def dy_dx(x):\n    raise AssertionError({first_assert(course, q6, 'q6a_analytic_gradient')!r})\n"})),
        # --- structure and metadata
        "deletes_a_test": full(course, q6_basic_gradients=_without_cell(solved(course, q6), "q6_gradient")),
        "duplicates_and_moves": full(course, q6_basic_gradients=_moved_and_duplicated(solved(course, q6))),
        "retypes_a_test": full(course, q6_basic_gradients=_retyped(solved(course, q6), "q6_gradient")),
        "raises_points": full(course, q6_basic_gradients=_points(submission(course, q6), "q6_gradient", 100)),
        "unflags_a_test": full(course, q6_basic_gradients=_unflagged(by_name("q6 wrong function x**2 + 3").build(course), "q6_gradient")),
        "drops_cell_ids": full(course, q6_basic_gradients=_without_ids(solved(course, q6))),
        # --- broken files
        "invalid_json": full(course, q6_basic_gradients=b'{"cells": [ oops'),
        "not_utf8": full(course, q6_basic_gradients=b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "x": "\xff\xfe"}'),
        "missing_notebook": full(course, q9_gradient_accumulation=None),
        "renamed_notebook": full(course, q9_gradient_accumulation=None),
        "extra_files": full(course),
        "links_to_source": full(course, q6_basic_gradients=None),
        "links_a_folder": full(course, q6_basic_gradients=None),
        # --- the verdict is not the student's process's to give
        "forges_replies": full(course, q6_basic_gradients=q6_with(course, FORGED_REPLIES)),
        "reads_the_tests": full(course, q6_basic_gradients=_reads_the_tests(course)),
        "patches_during_a_check": full(course, q6_basic_gradients=solved(course, q6, {
            "q6a-answer": "def dy_dx(x):\n    import torch\n    torch.Tensor.__add__ = lambda self, other: self\n"
            "    return 2 * x + 3\n"})),
        "fakes_a_tensor": full(course, q6_basic_gradients=solved(course, q6, {
            "q6-gradient-answer": "class Fake:\n    __class__ = property(lambda self: torch.Tensor)\n"
            "    requires_grad = True\n    is_leaf = True\n    dtype = torch.float32\n    shape = torch.Size([1])\n"
            "    grad_fn = 'AddBackward0'\n    def detach(self):\n        return self\n    def flatten(self):\n"
            "        return self\n    def tolist(self):\n        return [7.0]\nx = Fake()\nx.grad = Fake()\ny = Fake()\n"})),
        "floods_errors": full(course, q6_basic_gradients=q6_with(course,
            "import warnings\nfor _ in range(200):\n    warnings.warn('w' * 20_000)\nraise ValueError('e' * 5_000_000)")),
        "adds_slow_cells": full(course, q6_basic_gradients=_with_added_cells(solved(course, q6), "import time\ntime.sleep(1.5)", 30)),
        "leaves_files": {notebook_id: _ends_with(solved(course, notebook_id), LEAVE_FILES) for notebook_id in course.notebook_ids},
        "looks_for_files": {notebook_id: _starts_with(solved(course, notebook_id), LOOK_FOR_FILES) for notebook_id in course.notebook_ids},
        "leaves_a_secret": {notebook_id: _ends_with(solved(course, notebook_id),
            "kept = 'STUDENT_' + 'SECRET_' + '271828'\nprint(kept)") for notebook_id in course.notebook_ids},
        "hunts_secrets": {notebook_id: _starts_with(solved(course, notebook_id),
            MEMORY_SCAN + "print('HUNTED', _count_in_memory(rb'STUDENT_SECRET_[0-9]{6}'))") for notebook_id in course.notebook_ids},
        # --- files that used to stop or stall the whole run
        "lone_surrogate_and_pipes": full(course, q6_basic_gradients=_with_source(solved(course, q6), "x = 1  # \ud800"),
                                         q7_weights=None),
        "deep_nesting_and_long_int": full(
            course, q6_basic_gradients=b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b', "nbformat": 4}',
            q8_breaking_the_graph=nbformat.writes(solved(course, "q8_breaking_the_graph")).replace(
                '"nbformat": 4', f'"n": {"9" * 5000}, "nbformat": 4').encode()),
        "malformed_grade_id": full(course, q6_basic_gradients=_grade_id_as_number(solved(course, q6), "q6-gradient-answer")),
    }
    for student, notebooks in students.items():
        submit(course, student, notebooks)
    (root / "submitted" / "empty_folder").mkdir(parents=True)
    # A folder name that is not UTF-8: nbgrader cannot grade it, and it must not stop grades.csv or the table.
    not_utf8 = os.fsencode(root / "submitted") + b"/not_utf8_\xff/autograd_basics"
    os.makedirs(not_utf8)
    nbformat.write(solved(course, q6), os.fsdecode(not_utf8 + b"/q6_basic_gradients.ipynb"))
    # Named pipes: where a notebook should be, where nbgrader collect leaves timestamp.txt, and among the files
    # the search for a renamed notebook looks at. Reading any of them would block the run for ever.
    pipes = root / "submitted" / "lone_surrogate_and_pipes" / "autograd_basics"
    for name in ("q7_weights.ipynb", "timestamp.txt", "spare.ipynb"):
        os.mkfifo(pipes / name)
    (root / "submitted" / "folder_is_a_pipe").mkdir()
    os.mkfifo(root / "submitted" / "folder_is_a_pipe" / "autograd_basics")
    nbformat.write(solved(course, q9), root / "submitted" / "renamed_notebook" / "autograd_basics" / "Q9 (copy).ipynb")
    # Symbolic links to the instructor's notebooks (solutions inside) must not be graded.
    source_q6 = root / "source" / "autograd_basics" / f"{q6}.ipynb"
    (root / "submitted" / "links_to_source" / "autograd_basics" / f"{q6}.ipynb").symlink_to(source_q6)
    (root / "submitted" / "links_a_folder" / "autograd_basics" / "mine").symlink_to(source_q6.parent)
    extra = root / "submitted" / "extra_files" / "autograd_basics"
    (extra / "torch.py").write_text("raise SystemExit('shadowed torch')\n")
    (extra / "gradebook.db").write_bytes(b"not a database")
    (extra / "nbgrader_config.py").write_text(f"open({str(outside / 'config-ran.txt')!r}, 'w').write('ran')\n")

    before = {name: tree_digest(root / name) for name in ("source", "release", "submitted")}
    started = time.monotonic()
    # Every process of this run (workers, bubblewrap) inherits this variable: none may be left afterwards.
    run_id = f"hostile-run-{os.getpid()}-{time.time_ns()}"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "autograd-course"), "grade", "--jobs", "2", "--timeout", str(CELL_TIMEOUT)],
        cwd=root, capture_output=True, text=True, timeout=600, env=dict(os.environ, AUTOGRAD_COURSE_TEST_RUN=run_id),
    )
    seconds = time.monotonic() - started
    listener.close()
    with open(root / "grades.csv", newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    return {
        "course": course, "rows": rows, "result": result, "seconds": seconds, "before": before,
        "outside": outside, "listener": listener, "students": set(students) | {"empty_folder", "folder_is_a_pipe", "not_utf8_\\udcff"},
        "run_id": run_id,
    }


def _metadata_of(course, notebook_id, grade_id):
    """The release's metadata of one cell, to copy onto another."""
    nb = submission(course, notebook_id)
    return copy.deepcopy(dict(nb.cells[_find(nb, grade_id)].metadata))


def _answer_cells(nb):
    return [cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("solution")]


def _starts_with(nb, code):
    first = _answer_cells(nb)[0]
    first.source = f"{code}\n{first.source}"
    return nb


def _ends_with(nb, code):
    nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def _with_added_cells(nb, code, count):
    for _ in range(count):
        nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def _reads_the_tests(course):
    """Q6 solved, with an audit hook that keeps every source compiled in the student's process, and, after the
    last check, a count of the hidden tests' text in that source and in the process's memory."""
    nb = solved(course, "q6_basic_gradients")
    cells = _answer_cells(nb)
    cells[0].source = (
        "import sys\ncompiled = []\n"
        "sys.addaudithook(lambda event, args: compiled.append(repr(args)[:20000]) if event == 'compile' else None)\n"
        + cells[0].source
    )
    nb.cells.append(nbformat.v4.new_code_cell(
        MEMORY_SCAN + "import re\nhidden = rb'graph_was_use[d]|BEGIN HIDDEN TEST[S]|must be a leaf tensor that you creat[e]'\n"
        "print('COMPILED', sum(len(re.findall(hidden, text.encode())) for text in compiled))\n"
        "print('IN MEMORY', _count_in_memory(hidden))"))
    return nb


def _without_cell(nb, grade_id):
    nb.cells = [cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


def _find(nb, grade_id):
    return next(i for i, cell in enumerate(nb.cells) if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _moved_and_duplicated(nb):
    test = nb.cells.pop(_find(nb, "q6_gradient"))
    nb.cells.insert(0, test)  # before the answer it checks
    copy = nbformat.from_dict(json.loads(json.dumps(nb.cells[_find(nb, "q6a_analytic_gradient")])))
    copy["id"] = "copied-test"
    nb.cells.append(copy)
    return nb


def _retyped(nb, grade_id):
    cell = nb.cells[_find(nb, grade_id)]
    nb.cells[_find(nb, grade_id)] = nbformat.v4.new_markdown_cell(cell.source, id=cell.id, metadata=cell.metadata)
    return nb


def _points(nb, grade_id, points):
    nb.cells[_find(nb, grade_id)].metadata["nbgrader"]["points"] = points
    return nb


def _unflagged(nb, grade_id):
    meta = nb.cells[_find(nb, grade_id)].metadata["nbgrader"]
    meta["grade"] = False
    meta.pop("points", None)
    return nb


def _with_source(nb, text):
    """The notebook as JSON bytes with ``text`` added to its first answer cell (json.dumps escapes what UTF-8
    cannot hold, such as a lone surrogate, so the file is valid UTF-8 and valid JSON)."""
    data = json.loads(nbformat.writes(nb))
    answer = next(cell for cell in data["cells"] if cell["metadata"].get("nbgrader", {}).get("solution"))
    answer["source"] = "".join(answer["source"]) + "\n" + text
    return json.dumps(data).encode()


def _grade_id_as_number(nb, grade_id):
    """Valid for nbformat, but not for nbgrader's metadata schema: a grade_id that is a number."""
    data = json.loads(nbformat.writes(nb))
    data["cells"][_find(nb, grade_id)]["metadata"]["nbgrader"]["grade_id"] = 6
    return json.dumps(data).encode()


def _without_ids(nb):
    data = json.loads(nbformat.writes(nb))
    for cell in data["cells"]:
        cell.pop("id", None)
    return json.dumps(data).encode()


@pytest.fixture(scope="module")
def graded(hostile_class):
    return hostile_class


def test_the_run_succeeds_in_bounded_time(graded):
    assert graded["result"].returncode == 0, graded["result"].stderr
    assert graded["seconds"] < 240


def test_every_student_has_a_row(graded):
    assert set(graded["rows"]) == graded["students"]


def test_honest_students_are_unaffected(graded):
    rows = graded["rows"]
    assert (rows["honest_full"]["score"], rows["honest_full"]["status"]) == (marks(), "ok")
    assert (rows["honest_mistake"]["score"], rows["honest_mistake"]["status"]) == (marks(4), "ok")
    assert (rows["honest_blank"]["score"], rows["honest_blank"]["status"]) == ("0", "ok")


def test_course_files_and_submissions_are_untouched(graded):
    root = graded["course"].root
    for name, digest in graded["before"].items():
        assert tree_digest(root / name) == digest, name
    assert not (root / "pwned.txt").exists()
    assert not list(graded["outside"].iterdir())  # nothing escaped, and no student config ran


def test_sandbox_denies_reads_writes_and_network(graded):
    course = graded["course"]
    for student, expected_denials in (("reads_secrets", 4), ("writes_outside", 3), ("uses_network", 1)):
        nb = nbformat.read(course.autograded_dir / student / "autograd_basics" / "q6_basic_gradients.ipynb", 4)
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert text.count("denied") == expected_denials, (student, text)
        assert "READ" not in text and "CONNECTED" not in text
        assert graded["rows"][student]["score"] == marks()
    assert graded["listener"].connections == 0


def test_gradebook_survives_a_student_who_attacks_it(graded):
    assert graded["rows"]["destroys_gradebook"]["score"] == marks()
    assert graded["rows"]["honest_full"]["score"] == marks()


def _processes_with(text: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "environ").read_bytes() or text in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_no_process_outlives_grading(graded):
    # The sandboxed runners cannot outlive the bubblewrap processes that carry the run's variable.
    assert _processes_with(graded["run_id"].encode()) == []
    assert _processes_with(MARKER.encode()) == []


def test_processes_cannot_be_started(graded):
    course = graded["course"]
    nb = nbformat.read(course.autograded_dir / "starts_processes" / "autograd_basics" / "q6_basic_gradients.ipynb", 4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert text.count("denied") == 2
    assert graded["rows"]["starts_processes"]["score"] == marks()


@pytest.mark.parametrize(
    "student, status, score",
    [
        ("loops_forever", "timeout:q6_basic_gradients", marks(2)),
        ("swallows_the_alarm", "timeout:q6_basic_gradients", marks(2)),
        ("kills_its_kernel", "crashed:q6_basic_gradients", marks(2)),
        ("eats_memory", "resource_limit:q6_basic_gradients", marks(2)),
        ("floods_output", "resource_limit:q6_basic_gradients", marks()),
        ("patches_torch", "tampered:q6_basic_gradients", marks(4)),
        ("patches_builtins", "tampered:q6_basic_gradients", marks(4)),
        ("traces_asserts_away", "tampered:q6_basic_gradients", marks(4)),
        ("deletes_a_test", "tampered:q6_basic_gradients", marks()),
        ("duplicates_and_moves", "tampered:q6_basic_gradients", marks()),
        ("retypes_a_test", "tampered:q6_basic_gradients", marks()),
        ("raises_points", "tampered:q6_basic_gradients", marks(Q6_MARKS)),
        ("unflags_a_test", "tampered:q6_basic_gradients", marks(4)),
        ("drops_cell_ids", "invalid:q6_basic_gradients", marks()),
        ("invalid_json", "invalid:q6_basic_gradients", marks(Q6_MARKS)),
        ("not_utf8", "invalid:q6_basic_gradients", marks(Q6_MARKS)),
        ("missing_notebook", "missing:q9_gradient_accumulation", marks(Q9_MARKS)),
        ("renamed_notebook", "invalid:q9_gradient_accumulation", marks()),
        ("empty_folder", "missing:q6_basic_gradients;missing:q7_weights;missing:q8_breaking_the_graph;"
                         "missing:q9_gradient_accumulation", marks(FULL_MARKS)),
        ("extra_files", "ok", marks()),
        ("adds_hostile_cells", "ok", marks()),
        ("prints_hidden_tests", "ok", marks()),
        ("raises_hidden_tests", "ok", marks(2)),
        ("links_to_source", "invalid:q6_basic_gradients", marks(Q6_MARKS)),
        ("links_a_folder", "missing:q6_basic_gradients", marks(Q6_MARKS)),
        ("honest_shows_values", "ok", marks()),
        # Only Q6 was handed in: the others stay `missing` although nbgrader could not grade the student at all.
        ("not_utf8_\\udcff", "missing:q7_weights;missing:q8_breaking_the_graph;missing:q9_gradient_accumulation;"
                               "error:q6_basic_gradients", marks(FULL_MARKS)),
        ("forges_replies", "tampered:q6_basic_gradients", marks(2)),
        ("reads_the_tests", "ok", marks()),
        ("patches_during_a_check", "tampered:q6_basic_gradients", marks(2)),
        ("fakes_a_tensor", "ok", marks(4)),
        ("floods_errors", "resource_limit:q6_basic_gradients", marks()),
        ("adds_slow_cells", "timeout:q6_basic_gradients", marks()),
        ("leaves_files", "ok", marks()),
        ("looks_for_files", "ok", marks()),
        ("leaves_a_secret", "ok", marks()),
        ("hunts_secrets", "ok", marks()),
        ("lone_surrogate_and_pipes", "invalid:q6_basic_gradients;invalid:q7_weights", marks(Q6_MARKS + Q7_MARKS)),
        ("deep_nesting_and_long_int", "invalid:q6_basic_gradients;invalid:q8_breaking_the_graph", marks(Q6_MARKS + Q8_MARKS)),
        ("folder_is_a_pipe", "invalid:q6_basic_gradients;invalid:q7_weights;invalid:q8_breaking_the_graph;"
                             "invalid:q9_gradient_accumulation", marks(FULL_MARKS)),
        ("malformed_grade_id", "invalid:q6_basic_gradients;tampered:q6_basic_gradients", marks()),
    ],
)
def test_each_case_scores_its_intact_parts_and_names_what_happened(graded, student, status, score):
    row = graded["rows"][student]
    assert (row["status"], row["score"], row["max_score"]) == (status, score, marks()), row["notes"]


def test_files_that_used_to_stop_the_run_are_named_in_the_notes(graded):
    rows = graded["rows"]
    for student, phrases in {
        "lone_surrogate_and_pipes": ["lone surrogate (\\ud800)", "q7_weights.ipynb is a named pipe"],
        "deep_nesting_and_long_int": ["nested too deeply", "an integer of more than 1000 digits"],
        "folder_is_a_pipe": ["folder_is_a_pipe/autograd_basics is a named pipe, not a folder"],
        "malformed_grade_id": ["malformed grading metadata"],
    }.items():
        for phrase in phrases:
            assert phrase in rows[student]["notes"], (student, phrase, rows[student]["notes"])


def test_patched_checks_still_fail_the_wrong_answer(graded):
    course = graded["course"]
    assert part_scores(course, "patches_torch", "q6_basic_gradients")["q6_gradient"] == 0
    assert "torch.Tensor.tolist was added" in graded["rows"]["patches_torch"]["notes"]
    assert "torch.equal was replaced" in graded["rows"]["patches_torch"]["notes"]
    assert "builtins.isinstance was replaced" in graded["rows"]["patches_builtins"]["notes"]
    assert "sys.excepthook was replaced" in graded["rows"]["patches_builtins"]["notes"]
    assert "sys.displayhook was replaced" in graded["rows"]["patches_builtins"]["notes"]
    # The student's own `abs` and patched builtins stay in the student's process: the check ran on the judge's.
    assert "requires_grad is False" in failure_message(course, "patches_builtins", "q6_basic_gradients", "q6_gradient")
    assert "trace or profile hook" in graded["rows"]["traces_asserts_away"]["notes"]


def test_deleted_test_cells_are_restored_with_their_hidden_tests(graded):
    course = graded["course"]
    nb = nbformat.read(course.autograded_dir / "deletes_a_test" / "autograd_basics" / "q6_basic_gradients.ipynb", 4)
    restored = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "q6_gradient"]
    assert len(restored) == 1 and "graph_was_used" in restored[0].source
    assert part_scores(course, "deletes_a_test", "q6_basic_gradients")["q6_gradient"] == 4


def test_altered_points_never_count(graded):
    course = graded["course"]
    scores = part_scores(course, "raises_points", "q6_basic_gradients")
    assert scores["q6_gradient"] == 0 and sum(scores.values()) == 0


def test_feedback_hides_hidden_tests_but_explains_failures(graded):
    course = graded["course"]
    page = feedback_text(course, "honest_mistake", "q6_basic_gradients")
    assert "did you create x with requires_grad=True?" in page
    assert "graph_was_used" not in page and "BEGIN HIDDEN TESTS" not in page
    for student in graded["students"] - {"not_utf8_\\udcff"}:  # nbgrader could not grade that one
        for notebook_id in course.notebook_ids:
            text = feedback_text(course, student, notebook_id)
            assert "HIDDEN TESTS" not in text and "graph_was_used" not in text, (student, notebook_id)


def test_the_message_of_a_failed_hidden_check_is_kept(graded):
    course = graded["course"]
    message = failure_message(course, "unflags_a_test", "q6_basic_gradients", "q6_gradient")
    assert "did you write 3*x?" in message


def _outputs(course, student, notebook_id) -> str:
    nb = nbformat.read(course.autograded_dir / student / "autograd_basics" / f"{notebook_id}.ipynb", 4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_tests_never_reach_the_students_process(graded):
    text = _outputs(graded["course"], "reads_the_tests", "q6_basic_gradients")
    assert "COMPILED 0\n" in text and "IN MEMORY 0\n" in text, text[-500:]


def test_nothing_of_another_notebook_reaches_the_next(graded):
    course = graded["course"]
    for notebook_id in course.notebook_ids:
        fresh_tmp = sorted({path.split("/")[2] for path in python_dirs() if path.startswith("/tmp/")})
        assert f"LOOKED {fresh_tmp} []" in _outputs(course, "looks_for_files", notebook_id)
        assert "HUNTED 0\n" in _outputs(course, "hunts_secrets", notebook_id)


def test_one_output_cap_covers_errors_and_warnings(graded):
    path = graded["course"].autograded_dir / "floods_errors" / "autograd_basics" / "q6_basic_gradients.ipynb"
    assert path.stat().st_size < 2 * 2**20


def test_forged_replies_earn_nothing(graded):
    scores = part_scores(graded["course"], "forges_replies", "q6_basic_gradients")
    assert scores["q6c_tracking"] == 0
    assert "out of turn" in graded["rows"]["forges_replies"]["notes"]


def test_a_patch_made_while_a_check_runs_costs_that_check(graded):
    scores = part_scores(graded["course"], "patches_during_a_check", "q6_basic_gradients")
    assert scores["q6a_analytic_gradient"] == 0 and scores["q6_gradient"] == 4
    assert "while this check ran" in graded["rows"]["patches_during_a_check"]["notes"]


def test_feedback_pages_are_rendered_in_time_for_everyone(graded):
    # No student needed the scores-only fallback, the one with 132 KB of pathological markdown included.
    ungradable = "not_utf8_\\udcff"  # nbgrader could not grade that one, so it has no pages to render
    assert not [student for student, row in graded["rows"].items() if "feedback:" in row["notes"] and student != ungradable]
    course = graded["course"]
    for student in ("honest_full", "adds_hostile_cells", "prints_hidden_tests"):
        assert "Grade cell: <code>q6_gradient</code>" in feedback_page(course, student, "q6_basic_gradients")


def test_student_markup_is_shown_as_text_and_never_runs(graded):
    page = feedback_page(graded["course"], "adds_hostile_cells", "q6_basic_gradients")
    assert active_content(page, XSS) == []
    shown = shown_text(page)
    for injection in INJECTIONS:
        assert shown.count(injection) == 3, injection  # the two markdown cells and the raw cell, as written
    assert "[a](/files/" * 100 in shown


def formgrader_page(course, student: str, notebook_id: str) -> str:
    """A submission as nbgrader's formgrader shows it to an instructor: its HTMLExporter, configured as the
    formgrader configures it (the course's configuration, its template), on the autograded notebook."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = course.nbgrader_config()
    extra = Config()
    extra.HTMLExporter.template_name = "formgrade"
    extra.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    config.merge(extra)
    resources = {"assignment_id": course.assignment_id, "notebook_id": notebook_id, "submission_id": "s", "index": 0,
                 "total": 1, "base_url": "/", "student": student, "last_name": "", "first_name": "",
                 "notebook_path": "n.ipynb"}
    path = course.autograded_dir / student / course.assignment_id / f"{notebook_id}.ipynb"
    page, _ = HTMLExporter(config=config).from_filename(str(path), resources=resources)
    return page


def test_student_markup_never_runs_in_the_formgrader_either(graded):
    """An instructor who opens a submission in the formgrader runs nothing the student wrote, and still sees it."""
    course = graded["course"]
    page = formgrader_page(course, "adds_hostile_cells", "q6_basic_gradients")
    honest = formgrader_page(course, "honest_full", "q6_basic_gradients")
    # nothing a browser acts on but the formgrader template's own buttons, the same as for an honest notebook
    assert active_content(page, XSS) == active_content(honest, XSS)
    assert not [found for found in active_content(page, XSS) if XSS in found]
    shown = shown_text(page)
    for injection in INJECTIONS:
        assert shown.count(injection) == 3, injection
    # the instructor's own markdown still renders as markdown
    assert "<h1" in honest and "<pre class=\"student-text\">" not in honest


def test_no_feedback_page_shows_a_hidden_line_whoever_printed_it(graded):
    course = graded["course"]
    q6 = "q6_basic_gradients"
    for student, part in (("prints_hidden_tests", "q6_gradient"), ("raises_hidden_tests", "q6a_analytic_gradient")):
        secrets = hidden_lines(course, q6, part)
        assert secrets
        # the hidden lines are in what the student's code produced ...
        nb = nbformat.read(course.autograded_dir / student / "autograd_basics" / f"{q6}.ipynb", 4)
        produced = json.dumps([cell.get("outputs", []) for cell in nb.cells])
        assert any(json.dumps(line)[1:-1] in produced for line in secrets), student
        # ... but in no page
        text = shown_text(feedback_page(course, student, q6))
        shown = [line for line in secrets if "".join(line.split()) in "".join(text.split())]
        assert not shown, (student, shown[:2])
        assert "[hidden test removed]" in text
    message = failure_message(course, "raises_hidden_tests", q6, "q6a_analytic_gradient")
    assert first_assert(course, q6, "q6a_analytic_gradient") in message  # the attack reached the check
