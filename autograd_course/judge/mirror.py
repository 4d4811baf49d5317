"""The judge's side of what crosses from a student's kernel: plain data becomes real objects here, and what a
check passes to student code goes back as data. The kernel's side, and the format, are in sandbox/snapshot.py.

A check sees the student's objects as faithful copies made in the judge's own process:

- numbers, strings, lists, tuples, dicts, sets, bytes: themselves;
- tensors: real ``torch.Tensor`` (or ``nn.Parameter``) objects with the student's bytes, dtype, shape and strides,
  ``requires_grad`` and ``.grad``, sharing storage exactly where the student's tensors share it (so
  ``data_ptr()`` comparisons hold). A tensor with a ``grad_fn`` is the output of a stand-in graph node
  (named after the student's, e.g. ``AddBackward``) whose inputs are the leaves the student's graph reaches; when
  a check differentiates through it, the node asks the kernel for the gradients of the student's real graph, so
  an already-consumed graph raises the same error it would in Jupyter. Its ``metadata`` is the student's node's,
  except ``metadata["backward_calls"]``: the number of backward calls whose graph went through the student's node,
  as the kernel recorded them;
- exceptions: instances of the same builtin class (or a subclass of the same name), with the student's message and
  a traceback naming the same files, lines and functions;
- the student's functions and classes: callables that run in the kernel, on arguments passed as data;
- anything else: an object whose repr is the student's and whose attributes are read from the kernel.

Every comparison a check makes happens here, on these copies: a kernel can report any value (that is the student
writing the value by hand), but it cannot make a wrong value compare equal, and it never sees the check.
"""

from __future__ import annotations

import base64
import builtins
import ctypes
import linecache
import math
import re
import sys
import time
import types
import weakref
from typing import Any, cast

import torch

MAX_DEPTH = 64
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,80}\Z")


class MalformedValues(Exception):
    """The kernel sent values that do not describe any object."""


class CheckOutOfTime(BaseException):
    """The check's time ran out while student code ran for it. A BaseException, like KeyboardInterrupt: a
    check's `except Exception` must not swallow it."""


class CheckTooLarge(BaseException):
    """The student's objects a check reads are larger than the judge will copy."""


class Remote:
    """The judge's line to one kernel while one check runs: every question has the check's deadline, and what
    the kernel's watch reports along the way is kept (a check during which anything was tampered with fails)."""

    def __init__(self, kernel, deadline: float, budget: int, grace: float) -> None:
        self.kernel, self.deadline, self.budget, self.grace = kernel, deadline, budget, grace
        self.events: list[dict] = []
        # Whether the kernel has been told more than which names the check reads: arguments, attribute names,
        # the gradients asked for. A kernel that was told is not used for anything after the check.
        self.told = False

    def ask(self, op: str, **fields) -> dict:
        self.told |= op not in ("names", "fetch")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise CheckOutOfTime()
        # The kernel's own alarm fires at the deadline, so that a slow student function usually ends with a clean
        # answer; if it does not answer within the grace period, the kernel is killed.
        fields.setdefault("timeout", remaining)
        reply = self.kernel.request(op, self.deadline + self.grace, budget=self.budget, **fields)
        self.events.extend(event for event in reply.get("events", []) if type(event) is dict)
        if reply.get("timeout"):
            raise CheckOutOfTime()
        if reply.get("too_large"):
            raise CheckTooLarge()
        if "error" in reply:
            raise MalformedValues(f"the kernel could not answer: {str(reply['error'])[:300]}")
        return reply


class Mirror:
    """Copies of one kernel's objects, for one check. The same kernel object is always the same copy."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self.by_handle: dict[int, object] = {}
        self.handles: dict[int, tuple[object, int]] = {}  # id(copy) -> (copy, the kernel's handle)
        self.sizes: dict[int, int] = {}  # the kernel's handle -> the size of its copy, as _Builder counts it

    # ---------------------------------------------------------------------------------- questions
    def fetch(self, names: list[str]) -> dict:
        reply = self.remote.ask("fetch", names=names)
        values = self.rebuild(reply.get("values"))
        if type(values) is not dict or not all(type(name) is str for name in values):
            raise MalformedValues("the kernel's names are not a dictionary of names")
        # Only the names asked for: a name the check did not ask for (a builtin such as `abs` or `zip`, the
        # check's own helper, `__builtins__`) would shadow the judge's own in the check's namespace.
        if not set(values) <= set(names):
            raise MalformedValues("the kernel sent names the check did not ask for")
        return values

    def answer(self, reply: dict):
        """The result of a call, attribute read or gradient: returned, or raised as the student's exception."""
        if "raised" in reply:
            error = self.rebuild(reply["raised"])
            if not isinstance(error, Exception):
                raise MalformedValues("the kernel raised something that is not an exception")
            if isinstance(error, (StopIteration, StopAsyncIteration)):
                # Raised through a check's map() or next(), it would end an iteration early instead of failing:
                # list(map(student_function, inputs)) would come back short. Python does the same in a generator.
                wrapped = RuntimeError(f"the student's code raised {type(error).__name__}")
                setattr(wrapped, FROM_THE_STUDENT, True)
                raise wrapped from error
            raise error
        return self.rebuild(reply.get("result"))

    def call(self, handle: int, args: tuple, kwargs: dict):
        message = Outgoing(self).message([list(args), dict(kwargs)])
        return self.answer(self.remote.ask("call", target=handle, args=message, grad_enabled=torch.is_grad_enabled()))

    def getattr(self, handle: int, name: str):
        return self.answer(self.remote.ask("getattr", target=handle, name=name))

    def gradients(self, handle: int, leaves: list[int], grad_output) -> list:
        message = Outgoing(self).message(grad_output)
        result = self.answer(self.remote.ask("vjp", target=handle, leaves=leaves, grad_output=message))
        if type(result) is not list or len(result) != len(leaves):
            raise MalformedValues("the kernel's gradients do not match the graph's leaves")
        return result

    # ------------------------------------------------------------------------------------ rebuild
    def rebuild(self, message):
        try:
            objects = message["objects"]
            if type(objects) is not list:
                raise TypeError("objects is not a list")
            builder = _Builder(self, objects)
            root = builder.value(message["root"], 0)
            builder.finish()
            return root
        except (MalformedValues, CheckOutOfTime, CheckTooLarge):
            raise
        except (LookupError, TypeError, ValueError, RuntimeError, RecursionError, OverflowError) as error:
            raise MalformedValues(f"the kernel sent values the grader cannot read ({type(error).__name__}: {error})"[:400]) from None

    def remember(self, copy, handle) -> None:
        if type(handle) is int:
            self.by_handle[handle] = copy
            self.handles[id(copy)] = (copy, handle)

    def handle_of(self, copy) -> int | None:
        known = self.handles.get(id(copy))
        return known[1] if known is not None and known[0] is copy else None


class _Builder:
    def __init__(self, mirror: Mirror, objects: list) -> None:
        self.mirror, self.objects = mirror, objects
        self.built: dict[int, object] = {}
        self.pending_grads: list[tuple[torch.Tensor, object]] = []
        # Each container's size with every shared part counted as often as it is reached: what repr(), hash(),
        # == or torch.as_tensor() walk, in C, where the check's alarm cannot stop them.
        self.sizes: dict[int, int] = {}
        self.max_size = max(mirror.remote.budget // 4, 1)

    def finish(self) -> None:
        while self.pending_grads:
            tensor, value = self.pending_grads.pop()
            grad = self.value(value, 0)
            if grad is not None:
                if not isinstance(grad, torch.Tensor):
                    raise TypeError("a .grad that is not a tensor")
                tensor.grad = grad

    def value(self, value, depth: int):
        if value is None or type(value) in (bool, int, float, str):
            return value
        if type(value) is not dict or type(value.get("$")) is not int or depth > MAX_DEPTH:
            raise TypeError("not a value")
        index = value["$"]
        if index in self.built:
            return self.built[index]
        entry = self.objects[index]
        handle = entry.get("h")
        if type(handle) is int and handle in self.mirror.by_handle:
            self.built[index] = self.mirror.by_handle[handle]
            self.sizes[index] = self.mirror.sizes.get(handle, 1)  # built for an earlier message of this check
            return self.built[index]
        built = self._build(index, entry, depth + 1)
        self.built[index] = built
        self.mirror.remember(built, handle)
        if type(handle) is int and index in self.sizes:
            self.mirror.sizes[handle] = self.sizes[index]
        return built

    def _build(self, index: int, entry: dict, depth: int):
        kind = entry["k"]
        if kind in ("list", "dict", "set"):
            shell = {"list": list, "dict": dict, "set": set}[kind]()
            self.built[index] = shell
            self.mirror.remember(shell, entry.get("h"))
            if kind == "dict":
                pairs = [(self.value(key, depth), self.value(item, depth)) for key, item in entry["items"]]
                self._sized(index, [part for pair in entry["items"] for part in pair])
                for key, item in pairs:
                    shell[key] = item  # hashed only once known to be small enough
            else:
                items = [self.value(item, depth) for item in entry["items"]]
                self._sized(index, entry["items"])
                shell.extend(items) if kind == "list" else shell.update(items)
            return shell
        if kind in ("tuple", "frozenset"):
            items = [self.value(item, depth) for item in entry["items"]]
            self._sized(index, entry["items"])
            return tuple(items) if kind == "tuple" else frozenset(items)
        if kind == "bytes":
            raw = base64.b64decode(entry["b64"], validate=True)
            self.sizes[index] = 1 + len(raw) // 8
            return raw
        if kind == "complex":
            return complex(float(entry["re"]), float(entry["im"]))
        if kind == "range":
            built_range = range(int(entry["start"]), int(entry["stop"]), int(entry["step"]))
            # A few bytes that stand for any number of items: a check that makes a list or a tensor of it
            # (torch.as_tensor(range(10**12)) loops in C, out of the alarm's reach) pays for every one.
            if built_range.start != built_range.stop and _length(built_range) * 8 > self.mirror.remote.budget:
                raise CheckTooLarge()
            return built_range
        if kind == "size":
            return torch.Size([int(n) for n in entry["items"]])
        if kind == "dtype":
            return _dtype(entry["name"])
        if kind == "device":
            return torch.device(str(entry["name"]))
        if kind == "storage":
            data = bytearray(base64.b64decode(entry["b64"], validate=True))
            return torch.frombuffer(data, dtype=torch.uint8).untyped_storage() if data else torch.UntypedStorage(0)
        if kind == "tensor":
            return self._tensor(index, entry, depth)
        if kind == "ndarray":
            return _ndarray(entry)
        if kind == "exception":
            return self._exception(index, entry, depth)
        if kind == "callable":
            return StudentFunction(self.mirror, entry["h"], str(entry["name"])[:200])
        if kind == "module":
            return sys.modules.get(str(entry["name"])) or StudentObject(self.mirror, None, "module", f"<module {entry['name']!r}>")
        if kind == "object":
            return StudentObject(self.mirror, entry.get("h"), str(entry["type"])[:200], str(entry["repr"])[:1000])
        raise TypeError(f"unknown kind {kind!r}")

    def _sized(self, index: int, parts: list) -> None:
        """Record a container's size (its parts, each counted in full); refuse one larger than the check may read.
        A part still being built (a cycle) counts once: Python's repr and torch stop at cycles."""
        size = 1
        for part in parts:
            if type(part) is str:
                size += 1 + len(part) // 8
            elif type(part) is dict and type(part.get("$")) is int:
                size += self.sizes.get(part["$"], 1)
            else:
                size += 1
            if size > self.max_size:
                raise CheckTooLarge()
        self.sizes[index] = size

    def _tensor(self, index: int, entry: dict, depth: int) -> torch.Tensor:
        storage = self.value(entry["storage"], depth)
        if not isinstance(storage, torch.UntypedStorage):
            raise TypeError("a tensor without a storage")
        dtype = _dtype(entry["dtype"])
        shape, stride, offset = [int(n) for n in entry["shape"]], [int(n) for n in entry["stride"]], int(entry["offset"])
        # A tiny storage can be viewed as a huge tensor (stride 0): the copy may hold no more than the check may read.
        if math.prod(shape) * dtype.itemsize > self.mirror.remote.budget:
            raise CheckTooLarge()

        def view() -> torch.Tensor:
            return torch.empty(0, dtype=dtype).set_(storage, offset, shape, stride)

        node = entry["node"]
        with torch.enable_grad():
            if node is None:
                tensor = view()
                if entry.get("cls") == "Parameter":
                    tensor = torch.nn.Parameter(tensor, requires_grad=bool(entry["requires_grad"]))
                elif entry["requires_grad"]:
                    tensor.requires_grad_(True)
            else:
                leaves = [self.value(leaf, depth) for leaf in node["leaves"]]
                # Each leaf once, as the kernel's graph_leaves lists them: a million references to one leaf
                # would be a million inputs to the stand-in node, each walked in C.
                unique = {id(leaf): leaf for leaf in leaves if isinstance(leaf, torch.Tensor) and leaf.requires_grad}
                leaves = list(unique.values())
                handles = [handle for leaf in leaves if (handle := self.mirror.handle_of(leaf)) is not None]
                if not leaves or len(handles) < len(leaves):
                    leaves, handles = [torch.zeros((), requires_grad=True)], []
                link = _GraphLink(self.mirror, entry.get("h"), handles, view)
                tensor = _node_function(str(node["name"])).apply(link, *leaves)
                metadata = self.value(node.get("metadata"), depth)
                if isinstance(metadata, dict):
                    tensor.grad_fn.metadata.update(metadata)
                # The grader's own count, whatever the student wrote in their node's metadata.
                tensor.grad_fn.metadata["backward_calls"] = int(node.get("backward_calls") or 0)
                if entry.get("retains_grad"):
                    tensor.retain_grad()
        self.built[index] = tensor
        self.mirror.remember(tensor, entry.get("h"))
        if entry.get("grad") is not None:
            self.pending_grads.append((tensor, entry["grad"]))
        return tensor

    def _exception(self, index: int, entry: dict, depth: int) -> Exception:
        base = Exception
        for name in entry["bases"]:
            candidate = getattr(builtins, str(name), None)
            if isinstance(candidate, type) and issubclass(candidate, Exception):
                base = candidate
                break
        name = str(entry["name"])
        message = str(entry["message"])
        args = tuple(self.value(arg, depth) for arg in entry["args"])
        self._sized(index, [message, *entry["args"]])  # str() of an exception is the repr of its arguments
        if entry.get("module") == "builtins" and name == base.__name__:
            cls = base
        else:
            cls = _exception_class(name if _IDENTIFIER.match(name) else base.__name__, base)
        try:
            error = cls(*args)
        except Exception:  # noqa: BLE001 - a constructor that wants other arguments (UnicodeDecodeError...)
            error = cls.__new__(cls)
            error.args = args
        if cls is not base:
            setattr(error, "_student_message", message)  # noqa: B010 - only _exception_class's classes read it
        # Whatever its traceback says (the kernel may report no frames at all): the judge knows it for the student's.
        setattr(error, FROM_THE_STUDENT, True)
        return error.with_traceback(_traceback(entry["traceback"]))


class _GraphLink:
    """How a copied non-leaf tensor reaches the student's real graph in the kernel."""

    def __init__(self, mirror: Mirror, handle, leaf_handles: list[int], view) -> None:
        self.mirror, self.handle, self.leaf_handles, self.view = mirror, handle, leaf_handles, view

    def gradients(self, grad_output) -> tuple:
        if type(self.handle) is not int or not self.leaf_handles:
            raise RuntimeError("this tensor's graph cannot be reached in the student's process")
        return tuple(self.mirror.gradients(self.handle, self.leaf_handles, grad_output))


_node_functions: dict[str, type[torch.autograd.Function]] = {}


def _node_function(student_name: str) -> type[torch.autograd.Function]:
    """An autograd Function that stands for one of the student's graph nodes, named like it: a copy of
    ``y = x * 3`` has ``grad_fn`` ``MulBackward``."""
    name = re.sub(r"Backward\d*$", "", student_name)
    name = name if _IDENTIFIER.match(name) else "Student"
    if name not in _node_functions:

        def forward(ctx, link, *leaves):
            ctx.link = link
            return link.view()

        def backward(ctx, grad_output):
            return (None, *ctx.link.gradients(grad_output))

        # type() makes the class; mypy cannot see that it subclasses its base.
        _node_functions[name] = cast("type[torch.autograd.Function]", type(name, (torch.autograd.Function,), {
            "forward": staticmethod(forward), "backward": staticmethod(backward),
            "__module__": "student",
        }))
    return _node_functions[name]


_exception_classes: dict[tuple[str, type[Exception]], type[Exception]] = {}


def _exception_class(name: str, base: type[Exception]) -> type[Exception]:
    key = (name, base)
    if key not in _exception_classes:

        def __str__(self):
            return getattr(self, "_student_message", base.__str__(self))

        _exception_classes[key] = cast("type[Exception]", type(name, (base,), {"__str__": __str__, "__module__": "student"}))
    return _exception_classes[key]


def _traceback(frames: list) -> types.TracebackType | None:
    """A real traceback naming the student's frames (file, line, function), so that a check can inspect where an
    error was raised exactly as it would in Jupyter."""
    tb = None
    for filename, line, function, *text in reversed(frames[-32:]):
        line = min(max(int(line), 1), 100_000)
        frame, lasti = _frame_at(str(filename)[:500], str(function)[:200], line)
        STUDENT_LINES[frame.f_code] = str(text[0] if text else "")[:300]
        _seed_linecache(frame.f_code.co_filename, line, STUDENT_LINES[frame.f_code])
        tb = types.TracebackType(tb, frame, lasti, line)
    return tb


# The attribute that marks an exception rebuilt from the kernel's report (exceptions cannot be weakly referenced).
FROM_THE_STUDENT = "_autograd_course_from_the_student"


# The source line of each frame rebuilt from a student's traceback, as the kernel reported it. The judge never
# reads a file a student names: a traceback is shown from these.
STUDENT_LINES: weakref.WeakKeyDictionary[types.CodeType, str] = weakref.WeakKeyDictionary()


# The files a student's traceback named, whose lines linecache holds from the kernel's report, and how many lines
# those hold in all (a bound on the memory they take: a frame may claim line 100000 of a file).
_SEEDED: set[str] = set()
MAX_SEEDED_LINES = 1_000_000
_seeded_lines = 0


def _seed_linecache(filename: str, line: int, text: str) -> None:
    """Give linecache the student's line for a file their traceback names, so that a check reading the traceback
    (``traceback.extract_tb``, ``format_exception``) never opens it: the judge runs outside the sandbox, as the
    instructor, and the name could be the gradebook, a source notebook, another student's work or a device
    (``/dev/zero`` took the judge's whole memory). A file linecache already read for the judge's own frames is
    left as it is (a student's frame that names it gets that file's line, as in the student's process)."""
    global _seeded_lines
    if filename.startswith("<") and filename.endswith(">"):
        return  # linecache never opens these
    if filename in linecache.cache and filename not in _SEEDED:
        return
    _SEEDED.add(filename)
    lines: list[str] = linecache.getlines(filename) if filename in linecache.cache else []  # ours: changed in place
    if line > len(lines) and _seeded_lines + line - len(lines) <= MAX_SEEDED_LINES:
        _seeded_lines += line - len(lines)
        lines += [""] * (line - len(lines))
    if line <= len(lines):
        lines[line - 1] = text.rstrip("\n") + "\n"
    # No modification time: linecache.checkcache leaves such an entry alone and never reads the file.
    linecache.cache[filename] = (0, None, lines, filename)


def _frame_at(filename: str, function: str, line: int) -> tuple[types.FrameType, int]:
    """A finished frame of a code object named ``function`` in ``filename``, and the offset of an instruction on
    ``line`` (Python 3.11 reads a traceback's line from its instruction offset)."""
    source = "\n" * (line - 1) + "import sys; frame = sys._getframe()"
    try:
        code = compile(source, filename, "exec").replace(co_name=function)
    except (ValueError, TypeError):
        code = compile(source, "<unknown>", "exec")
    scope: dict = {}
    exec(code, scope)
    lasti = next((2 * index for index, (start, *_) in enumerate(code.co_positions()) if start == line), 0)
    return scope["frame"], lasti


def _length(values: range) -> int:
    try:
        return len(values)
    except OverflowError:  # more items than an index can count
        return sys.maxsize


def _dtype(name) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"no dtype {name!r}")
    return dtype


def _ndarray(entry: dict):
    import numpy

    dtype = numpy.dtype(str(entry["dtype"]))
    if dtype.kind not in "biufc":
        raise ValueError("not a numeric array")
    shape = [int(n) for n in entry["shape"]]
    return numpy.frombuffer(base64.b64decode(entry["b64"], validate=True), dtype=dtype).reshape(shape).copy()


class StudentFunction:
    """A function, class or other callable of the student's: calling it runs it in the kernel."""

    def __init__(self, mirror: Mirror, handle: int, name: str) -> None:
        self._mirror, self._handle = mirror, handle
        self.__name__ = self.__qualname__ = name.rsplit(".", 1)[-1]

    def __call__(self, *args, **kwargs):
        return self._mirror.call(self._handle, args, kwargs)

    def __repr__(self) -> str:
        return f"<student function {self.__qualname__}>"


class StudentObject:
    """Any other object of the student's: its repr as the student's code gives it, its attributes read from the
    kernel one at a time."""

    def __init__(self, mirror: Mirror, handle, type_name: str, text: str) -> None:
        self._mirror, self._handle, self._type_name, self._text = mirror, handle, type_name, text

    def __getattr__(self, name: str):
        # Protocols (__torch_function__, __array__, __len__...) are looked up on purpose by library code, and
        # never answered by the student.
        if name.startswith("__") or type(self._handle) is not int:
            raise AttributeError(name)
        return self._mirror.getattr(self._handle, name)

    def __repr__(self) -> str:
        return self._text


# ------------------------------------------------------------------------------------------ outgoing
class Outgoing:
    """What a check passes to student code, as data; copies of the student's own objects go back by handle."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.objects: list[dict] = []
        self.memo: dict[int, int] = {}
        self.storages: dict[tuple[int, int], int] = {}
        self.views: dict[int, list[tuple[dict, int, int]]] = {}  # storage entry -> (tensor entry, first, end byte)
        self.keep: list = []

    def message(self, root) -> dict:
        message = {"root": self.value(root), "objects": self.objects}
        self._trim_storages()
        return message

    def _trim_storages(self) -> None:
        """Each storage sent holds only the bytes the tensors passed view, not the whole storage: a check that
        passes ``table[0]`` must not hand the student's code ``table[1]`` (the expected outputs, say)."""
        for index, views in self.views.items():
            storage = self.keep[self.objects[index]["keep"]]
            first = min((start for _, start, end in views if end > start), default=0)
            # Every view's offset stays a whole number of its elements (dtype sizes are powers of two).
            first -= first % max(_dtype(entry["dtype"]).itemsize for entry, _, _ in views)
            end = max((end for _, start, end in views if end > start), default=first)
            raw = ctypes.string_at(storage.data_ptr() + first, end - first) if end > first else b""
            self.objects[index] = {"k": "storage", "b64": base64.b64encode(raw).decode("ascii")}
            for entry, start, stop in views:
                itemsize = _dtype(entry["dtype"]).itemsize
                entry["offset"] = (start - first) // itemsize if stop > start else 0

    def _entry(self, obj, entry: dict) -> dict:
        self.memo[id(obj)] = len(self.objects)
        self.keep.append(obj)
        self.objects.append(entry)
        return {"$": len(self.objects) - 1}

    def value(self, obj):
        kind = type(obj)
        if obj is None or kind in (bool, int, float, str):
            return obj
        if id(obj) in self.memo:
            return {"$": self.memo[id(obj)]}
        handle = self.mirror.handle_of(obj)
        if handle is not None:
            return self._entry(obj, {"k": "handle", "h": handle})
        if kind in (list, tuple, set, frozenset):
            entry: dict[str, Any] = {"k": kind.__name__, "items": []}
            reference = self._entry(obj, entry)
            entry["items"] = [self.value(item) for item in obj]
            return reference
        if kind is dict:
            entry = {"k": "dict", "items": []}
            reference = self._entry(obj, entry)
            entry["items"] = [[self.value(key), self.value(item)] for key, item in obj.items()]
            return reference
        if isinstance(obj, torch.Tensor):
            return self._tensor(obj)
        if kind is torch.Size:
            return self._entry(obj, {"k": "size", "items": list(obj)})
        if kind is torch.dtype:
            return self._entry(obj, {"k": "dtype", "name": str(obj).removeprefix("torch.")})
        if kind is torch.device:
            return self._entry(obj, {"k": "device", "name": str(obj)})
        if kind in (bytes, bytearray):
            return self._entry(obj, {"k": "bytes", "b64": base64.b64encode(bytes(obj)).decode("ascii")})
        if kind is complex:
            return self._entry(obj, {"k": "complex", "re": obj.real, "im": obj.imag})
        if kind is range:
            return self._entry(obj, {"k": "range", "start": obj.start, "stop": obj.stop, "step": obj.step})
        if kind is types.ModuleType:
            return self._entry(obj, {"k": "module", "name": obj.__name__})
        raise TypeError(f"a check can pass only data to the student's code, not a {kind.__name__}")

    def _tensor(self, tensor: torch.Tensor) -> dict:
        data = tensor.detach()
        if data.is_conj() or data.is_neg():
            data = data.resolve_conj().resolve_neg().clone()
        storage = data.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in self.storages:
            # Its bytes are filled in by _trim_storages, once every tensor that views it is known.
            self.storages[key] = len(self.objects)
            self.views[len(self.objects)] = []
            self.keep.append(storage)
            self.objects.append({"k": "storage", "keep": len(self.keep) - 1})
        entry = {
            "k": "tensor",
            "cls": "Parameter" if isinstance(tensor, torch.nn.Parameter) else "Tensor",
            "dtype": str(tensor.dtype).removeprefix("torch."),
            "shape": list(data.shape),
            "stride": list(data.stride()),
            "offset": data.storage_offset(),
            "storage": {"$": self.storages[key]},
            "requires_grad": bool(tensor.requires_grad),
            "grad": None,
        }
        itemsize = data.dtype.itemsize
        start = int(data.storage_offset()) * itemsize
        steps = zip(data.shape, data.stride(), strict=True)
        extent = 0 if data.numel() == 0 else 1 + sum((int(size) - 1) * int(step) for size, step in steps)
        self.views[self.storages[key]].append((entry, start, start + extent * itemsize))
        reference = self._entry(tensor, entry)
        if tensor.is_leaf and tensor.grad is not None:
            entry["grad"] = self.value(tensor.grad)
        return reference
