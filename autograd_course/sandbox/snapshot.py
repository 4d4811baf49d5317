"""The kernel's side of what crosses to the judge: student objects go out as plain data, the judge's arguments
come in. The judge's side is judge/mirror.py.

A message holding values is ``{"root": value, "objects": [object, ...]}``. A value is JSON's null, true, false,
a number (NaN and the infinities as Python's JSON writes them) or a string, or ``{"$": n}``: the n-th entry of
"objects". Everything that is not a plain scalar is an entry there, once, so that two names for one object (a
stored ``x.grad`` and ``x.grad`` itself, say) are one object on the other side too. Entries, by kind "k":

- ``list`` / ``tuple`` / ``set`` / ``frozenset``: "items"; ``dict``: "items" as [key, value] pairs
- ``bytes``: "b64"; ``complex``: "re", "im"; ``range``: "start", "stop", "step"
- ``storage``: "b64", the raw bytes of a tensor storage, shared by every tensor that views it
- ``tensor``: "cls" (Tensor or Parameter), "dtype", "shape", "stride", "offset", "storage", "requires_grad",
  "grad", "retains_grad", and "node": null for a leaf, else {"name": the grad_fn's class, "leaves": the leaf
  tensors its graph reaches, "metadata": the grad_fn's metadata dictionary, "backward_calls": how many backward
  calls went through that node, as the kernel recorded them}
- ``exception``: "name", "bases" (its builtin exception classes, nearest first), "message", "args",
  "traceback" ([file, line, function, source line] per frame, outermost first)
- ``callable``: "name"; ``module``: "name"; ``dtype`` / ``device``: "name"; ``size``: "items"
- ``ndarray``: "dtype", "shape", "b64"
- ``object``: "type", "repr": anything else; the judge reads its attributes one by one
- ``handle`` (judge to kernel only): an object of the kernel's, sent back by its handle "h"

Every kernel object sent carries "h", its handle in this kernel: the judge calls a function, reads an attribute
or differentiates a tensor's graph by handle. Nothing here is trusted by the judge: this code runs in the
student's process, so a student can make it say anything; what it cannot do is decide a check.
"""

from __future__ import annotations

import base64
import ctypes
import linecache
import sys
import traceback
import types
import warnings
from typing import Any

MAX_DEPTH = 48
MAX_ITEMS = 100_000
MAX_TEXT = 100_000
MAX_FRAMES = 32
MAX_GRAPH_NODES = 10_000
OBJECT_COST = 48  # bytes of JSON an entry costs besides its data, roughly


class TooLarge(Exception):
    """The values asked for are larger than the judge is willing to read."""


# The plain scalars, most specific first: an object that is an instance of one crosses as it.
PLAIN_SCALARS: tuple[type, ...] = (bool, int, float, str, complex)


class Handles:
    """Objects the judge may name again, kept alive for the notebook's life."""

    def __init__(self) -> None:
        self._by_id: dict[int, int] = {}
        self._objects: list = []

    def add(self, obj) -> int:
        handle = self._by_id.get(id(obj))
        if handle is None:
            handle = len(self._objects)
            self._objects.append(obj)
            self._by_id[id(obj)] = handle
        return handle

    def get(self, handle) -> Any:
        if type(handle) is not int or not 0 <= handle < len(self._objects):
            raise LookupError(f"no object with handle {handle!r}")
        return self._objects[handle]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _safe_text(function, limit: int = MAX_TEXT) -> str:
    try:
        text = function()
        if type(text) is not str:
            text = "<not text>"
    except BaseException as error:  # noqa: BLE001 - a broken __str__ or __repr__ is the student's
        text = f"<unprintable: {type(error).__name__}>"
    return text[:limit]


# The grader's record of backward calls, kept here, out of the student's objects: id(node) -> [node, count of the
# backward calls whose graph went through that node]. The kernel's wrapper of torch.autograd.backward fills it.
BACKWARD_RECORD: dict[int, list] = {}


def graph_nodes(roots: list, limit: int = MAX_GRAPH_NODES) -> list:
    """The nodes of the graphs under ``roots``, each once, at most ``limit`` of them."""
    nodes: list = []
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack and len(nodes) < limit:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        stack.extend(reversed([following for following, _ in getattr(node, "next_functions", ())]))
    return nodes


def backward_calls(node) -> int:
    entry = BACKWARD_RECORD.get(id(node))
    return entry[1] if entry is not None and entry[0] is node else 0


def graph_leaves(grad_fn, limit: int = MAX_GRAPH_NODES) -> list:
    """The leaf tensors a graph reaches (AccumulateGrad nodes' variables), in a stable order."""
    leaves: list = []
    seen: set[int] = set()
    stack = [grad_fn]
    while stack and len(seen) < limit:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            if all(variable is not leaf for leaf in leaves):
                leaves.append(variable)
            continue
        stack.extend(reversed([following for following, _ in getattr(node, "next_functions", ())]))
    return leaves


class Encoder:
    """Student objects to one message of plain data, within a byte budget."""

    def __init__(self, handles: Handles, budget: int) -> None:
        import torch

        self.torch = torch
        self.handles = handles
        self.budget = budget
        self.objects: list[dict] = []
        self.memo: dict[int, int] = {}
        self.storages: dict[tuple[int, int], int] = {}
        self.keep: list = []  # ids in memo stay valid while the message is built

    def message(self, root) -> dict:
        return {"root": self.value(root), "objects": self.objects}

    def _spend(self, cost: int) -> None:
        self.budget -= cost
        if self.budget < 0:
            raise TooLarge()

    def _entry(self, obj, entry: dict, handle: bool = True) -> dict:
        index = len(self.objects)
        self.memo[id(obj)] = index
        self.keep.append(obj)
        if handle:
            entry["h"] = self.handles.add(obj)
        self.objects.append(entry)
        self._spend(OBJECT_COST)
        return {"$": index}

    def value(self, obj, depth: int = 0):
        kind = type(obj)
        if obj is None or kind is bool:
            return obj
        if kind is str:
            self._spend(len(obj))
            return obj
        if kind is int:
            if obj.bit_length() > 4000:
                return self._opaque(obj)
            return obj
        if kind is float:
            return obj
        if id(obj) in self.memo:
            return {"$": self.memo[id(obj)]}
        if depth > MAX_DEPTH:
            return self._opaque(obj)
        torch = self.torch
        if issubclass(kind, torch.Tensor):
            return self._tensor(obj, depth)
        if kind in (list, tuple, set, frozenset) or (issubclass(kind, (list, tuple)) and kind is not torch.Size):
            return self._sequence(obj, kind, depth)
        if issubclass(kind, dict):
            return self._dict(obj, depth)
        if kind is torch.Size:
            return self._entry(obj, {"k": "size", "items": [int(n) for n in obj]}, handle=False)
        if kind is torch.dtype:
            return self._entry(obj, {"k": "dtype", "name": str(obj).removeprefix("torch.")}, handle=False)
        if kind is torch.device:
            return self._entry(obj, {"k": "device", "name": str(obj)}, handle=False)
        if kind in (bytes, bytearray):
            self._spend(len(obj) * 4 // 3)
            return self._entry(obj, {"k": "bytes", "b64": _b64(bytes(obj))}, handle=False)
        if kind is complex:
            return self._entry(obj, {"k": "complex", "re": obj.real, "im": obj.imag}, handle=False)
        if kind is range:
            return self._entry(obj, {"k": "range", "start": obj.start, "stop": obj.stop, "step": obj.step}, handle=False)
        if issubclass(kind, BaseException):
            return self._exception(obj, depth)
        if kind is types.ModuleType:
            return self._entry(obj, {"k": "module", "name": _safe_text(lambda: str(obj.__name__), 200)}, handle=False)
        if kind.__module__ == "numpy" and kind.__name__ == "ndarray" and obj.dtype.kind in "biufc":
            return self._ndarray(obj)
        # Subclasses of the plain scalars (numpy's float64, an IntEnum...) cross as their plain value.
        for plain in PLAIN_SCALARS:
            if isinstance(obj, plain):
                try:
                    return self.value(plain(obj), depth + 1)
                except BaseException:  # noqa: BLE001
                    break
        if callable(obj):
            name = _safe_text(lambda: str(getattr(obj, "__qualname__", None) or kind.__name__), 200)
            return self._entry(obj, {"k": "callable", "name": name})
        return self._opaque(obj)

    def _opaque(self, obj) -> dict:
        kind = type(obj)
        text = _safe_text(lambda: repr(obj), 1000)
        self._spend(len(text))
        qualname = f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', kind.__name__)}"
        return self._entry(obj, {"k": "object", "type": qualname[:200], "repr": text})

    def _sequence(self, obj, kind, depth) -> dict:
        name = "list" if issubclass(kind, list) else "tuple" if issubclass(kind, tuple) else kind.__name__
        entry: dict[str, Any] = {"k": name, "items": []}
        reference = self._entry(obj, entry, handle=name != "tuple")
        items = list.__iter__(obj) if issubclass(kind, list) else iter(obj)
        for count, item in enumerate(items):
            if count >= MAX_ITEMS:
                raise TooLarge()
            entry["items"].append(self.value(item, depth + 1))
        return reference

    def _dict(self, obj, depth) -> dict:
        entry: dict[str, Any] = {"k": "dict", "items": []}
        reference = self._entry(obj, entry)
        for count, (key, item) in enumerate(dict.items(obj)):
            if count >= MAX_ITEMS:
                raise TooLarge()
            entry["items"].append([self.value(key, depth + 1), self.value(item, depth + 1)])
        return reference

    def _storage(self, tensor) -> dict:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in self.storages:
            self._spend(storage.nbytes() * 4 // 3)
            data = ctypes.string_at(storage.data_ptr(), storage.nbytes()) if storage.nbytes() else b""
            self.storages[key] = len(self.objects)
            self.keep.append(storage)
            self.objects.append({"k": "storage", "b64": _b64(data)})
        return {"$": self.storages[key]}

    def _tensor(self, t, depth) -> dict:
        torch = self.torch
        if t.layout != torch.strided or t.device.type != "cpu" or t.is_quantized or t.is_meta or t.is_nested:
            return self._opaque(t)
        entry: dict[str, Any] = {"k": "tensor", "cls": "Parameter" if isinstance(t, torch.nn.Parameter) else "Tensor"}
        reference = self._entry(t, entry)
        data = t
        if t.is_conj() or t.is_neg():
            with torch.no_grad():
                data = t.resolve_conj().resolve_neg().detach().clone()
        entry.update(
            dtype=str(t.dtype).removeprefix("torch."),
            shape=list(t.shape),
            stride=list(data.stride()),
            offset=data.storage_offset(),
            storage=self._storage(data),
            requires_grad=bool(t.requires_grad),
            retains_grad=bool(t.retains_grad),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            grad = t.grad if (t.is_leaf or t.retains_grad) else None
        entry["grad"] = self.value(grad, depth + 1)
        node = t.grad_fn
        if node is None:
            entry["node"] = None
        else:
            leaves = graph_leaves(node)
            metadata = getattr(node, "metadata", None)
            entry["node"] = {
                "name": type(node).__name__[:200],
                "leaves": [self.value(leaf, depth + 1) for leaf in leaves],
                "metadata": self.value(dict(metadata) if type(metadata) is dict else {}, depth + 1),
                "backward_calls": backward_calls(node),
            }
        return reference

    def _ndarray(self, array) -> dict:
        import numpy

        data = numpy.ascontiguousarray(array).tobytes()
        self._spend(len(data) * 4 // 3)
        return self._entry(array, {"k": "ndarray", "dtype": array.dtype.str, "shape": list(array.shape), "b64": _b64(data)})

    def _exception(self, error, depth) -> dict:
        kind = type(error)
        bases = [base.__name__ for base in kind.__mro__ if base.__module__ == "builtins" and issubclass(base, BaseException)]
        entry: dict[str, Any] = {
            "k": "exception",
            "name": kind.__name__[:200],
            "module": str(getattr(kind, "__module__", ""))[:200],
            "bases": bases,
            "message": _safe_text(lambda: str(error)),
        }
        reference = self._entry(error, entry)
        try:
            args = tuple(error.args)[:16]
        except BaseException:  # noqa: BLE001
            args = ()
        entry["args"] = [self.value(arg, depth + 1) for arg in args]
        frames = []
        try:
            for frame, line in traceback.walk_tb(error.__traceback__):
                code = frame.f_code
                text = linecache.getline(code.co_filename, line or 0).strip()[:300]
                frames.append([str(code.co_filename)[:500], int(line or 0), str(code.co_name)[:200], text])
        except BaseException:  # noqa: BLE001
            frames = []
        entry["traceback"] = frames[-MAX_FRAMES:]
        return reference


# ------------------------------------------------------------------------------------------ incoming
class Decoder:
    """The judge's arguments to kernel objects: data becomes new objects, handles become the kernel's own."""

    def __init__(self, handles: Handles) -> None:
        import torch

        self.torch = torch
        self.handles = handles

    def message(self, message: dict):
        self.objects = message.get("objects") or []
        self.built: dict[int, object] = {}
        return self.value(message.get("root"))

    def value(self, value):
        if value is None or type(value) in (bool, int, float, str):
            return value
        if type(value) is not dict or type(value.get("$")) is not int:
            raise ValueError("malformed value")
        index = value["$"]
        if index in self.built:
            return self.built[index]
        entry = self.objects[index]
        kind = entry["k"]
        torch = self.torch
        if kind in ("list", "dict", "set"):
            shell = {"list": list, "dict": dict, "set": set}[kind]()
            self.built[index] = shell
            if kind == "dict":
                for key, item in entry["items"]:
                    shell[self.value(key)] = self.value(item)
            elif kind == "list":
                shell.extend(self.value(item) for item in entry["items"])
            else:
                shell.update(self.value(item) for item in entry["items"])
            return shell
        if kind in ("tuple", "frozenset"):
            built: object = (tuple if kind == "tuple" else frozenset)(self.value(item) for item in entry["items"])
        elif kind == "handle":
            built = self.handles.get(entry["h"])
        elif kind == "bytes":
            built = base64.b64decode(entry["b64"])
        elif kind == "complex":
            built = complex(entry["re"], entry["im"])
        elif kind == "range":
            built = range(entry["start"], entry["stop"], entry["step"])
        elif kind == "size":
            built = torch.Size(entry["items"])
        elif kind == "dtype":
            built = _dtype(torch, entry["name"])
        elif kind == "device":
            built = torch.device(entry["name"])
        elif kind == "storage":
            data = bytearray(base64.b64decode(entry["b64"]))
            built = torch.frombuffer(data, dtype=torch.uint8).untyped_storage() if data else torch.UntypedStorage(0)
        elif kind == "tensor":
            built = self._tensor(entry)
        elif kind == "module":
            built = sys.modules[entry["name"]]
        else:
            raise ValueError(f"the judge cannot send a {kind!r}")
        self.built[index] = built
        return built

    def _tensor(self, entry):
        torch = self.torch
        storage = self.value(entry["storage"])
        tensor = torch.empty(0, dtype=_dtype(torch, entry["dtype"])).set_(
            storage, entry["offset"], entry["shape"], entry["stride"]
        )
        if entry.get("cls") == "Parameter":
            tensor = torch.nn.Parameter(tensor, requires_grad=bool(entry["requires_grad"]))
        elif entry["requires_grad"]:
            tensor.requires_grad_(True)
        grad = self.value(entry.get("grad"))
        if grad is not None:
            tensor.grad = grad
        return tensor


def _dtype(torch, name: str):
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"no dtype {name!r}")
    return dtype

