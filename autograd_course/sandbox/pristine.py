"""Notice when student code patches what the grader relies on in the kernel, and put it back.

This is not a security boundary: the verdict is decided in the judge, outside this process (see judge/), and a
student's kernel can only ever report values. It keeps an honest kernel honest when a student experiments
(a patched `torch.Tensor.tolist` would otherwise garble the values the kernel reports), and it names what it
found, which becomes the `tampered` status. A check during which anything is found earns no points.
"""

from __future__ import annotations

import builtins
import functools
import sys
import types

_MISSING = object()


class Pristine:
    """What the kernel's reports rely on, as it was before any student code ran; `restore` puts it back."""

    def __init__(self, *own_modules: types.ModuleType) -> None:
        import json
        import math
        import operator
        import os
        import struct

        import torch

        self.namespaces: list[tuple[str, object]] = [(module.__name__, module) for module in own_modules]
        self.namespaces += [
            ("json", json),
            ("os", os),
            ("struct", struct),
            ("builtins", builtins),
            ("torch", torch),
            ("torch.Tensor", torch.Tensor),
            ("torch.autograd", torch.autograd),
            ("torch.optim", torch.optim),
            ("torch.optim.Optimizer", torch.optim.Optimizer),
            ("torch.optim.SGD", torch.optim.SGD),
            ("math", math),
            ("operator", operator),
        ]
        self.snapshots = [(label, obj, dict(vars(obj))) for label, obj in self.namespaces]
        self.modules = {
            name: sys.modules[name] for name in ("builtins", "torch", "math", "operator", "warnings", "json", "os")
        }
        self.sys_hooks = {name: getattr(sys, name) for name in ("excepthook", "displayhook", "breakpointhook")}

    def restore(self) -> list[str]:
        """Undo what student code put in place of the guarded state; return a description of each one found.

        Only code written in the notebook counts: torch and the standard library change these namespaces
        themselves (``set_default_dtype`` swaps ``torch.Storage``, ``copy.copy`` caches ``__slotnames__``), and an
        honest student who calls them is not tampering. ``warnings`` is not watched: nothing the kernel reports
        depends on it, and replacing ``warnings.showwarning`` to silence warnings is an honest habit."""
        found = []
        for label, obj, snapshot in self.snapshots:
            current = vars(obj)
            for name, value in snapshot.items():
                now = current.get(name, _MISSING)
                if now is not value and (now is _MISSING or written_in_a_cell(now)):
                    found.append(f"{label}.{name} was {'deleted' if now is _MISSING else 'replaced'}")
                    _force_setattr(obj, name, value)
            for name in set(current) - set(snapshot):
                if written_in_a_cell(current[name]):
                    found.append(f"{label}.{name} was added")
                    _force_delattr(obj, name)
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:
                found.append(f"sys.modules[{name!r}] was replaced")
                sys.modules[name] = module
        for name, hook in self.sys_hooks.items():
            if getattr(sys, name) is not hook and written_in_a_cell(getattr(sys, name)):
                found.append(f"sys.{name} was replaced")
                setattr(sys, name, hook)
        for hook, remove in ((sys.gettrace(), sys.settrace), (sys.getprofile(), sys.setprofile)):
            if hook is not None and written_in_a_cell(hook):
                found.append("a trace or profile hook was installed")
                remove(None)
        return found


CELL_FILE_PREFIX = "<cell "  # the file name the kernel compiles each student cell under


def written_in_a_cell(value) -> bool:
    """Whether ``value`` is code from a notebook cell: a function or lambda, a method or partial of one, a class
    defined there, or an instance of such a class."""
    for _ in range(8):
        kind = type(value)
        if kind is types.FunctionType:
            return value.__code__.co_filename.startswith(CELL_FILE_PREFIX)
        if kind is types.MethodType:
            value = value.__func__
        elif kind is functools.partial:
            value = value.func
        elif isinstance(value, type):
            return value.__module__ == "__main__"
        else:
            return kind.__module__ == "__main__"
    return False


def _force_setattr(obj, name, value) -> None:
    try:
        setattr(obj, name, value)
    except (AttributeError, TypeError):
        vars(obj)[name] = value  # module dicts are plain dicts


def _force_delattr(obj, name) -> None:
    try:
        delattr(obj, name)
    except (AttributeError, TypeError):
        vars(obj).pop(name, None)
