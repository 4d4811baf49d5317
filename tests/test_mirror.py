"""What crosses from a student's kernel to the judge, in one process and in milliseconds: the kernel's encoder
(sandbox/snapshot.py) turns objects into plain data, and the judge's mirror (judge/mirror.py) rebuilds copies.

The end-to-end tests (test_judge.py) run the same code across the sandbox; these pin down the two halves: faithful
copies of honest objects, and a clean refusal of anything a hostile kernel could send instead.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from autograd_course.judge.mirror import CheckTooLarge, MalformedValues, Mirror, StudentFunction, StudentObject
from autograd_course.sandbox.snapshot import Encoder, Handles, TooLarge

BUDGET = 1 << 20


class NoKernel:
    """A judge's line to a kernel that is never asked anything: rebuilding a message needs no question."""

    told = False
    budget = BUDGET

    def ask(self, op: str, **fields):
        raise AssertionError(f"the mirror asked the kernel {op!r} while rebuilding")


def across(root, budget: int = BUDGET):
    """root, encoded as the kernel does, sent as JSON, and rebuilt as the judge does."""
    message = json.loads(json.dumps(Encoder(Handles(), budget).message(root)))
    return Mirror(NoKernel()).rebuild(message)


def rebuild(objects: list, root=None):
    return Mirror(NoKernel()).rebuild({"root": {"$": 0} if root is None else root, "objects": objects})


# ------------------------------------------------------------------------------------------ faithful
def test_plain_values_cross_unchanged():
    values = {"n": 3, "f": 2.5, "s": "text \ud800", "b": True, "none": None, "l": [1, [2]], "t": (1, 2),
              "fs": frozenset({1}), "set": {2}, "bytes": b"\x00\xff", "c": 1 + 2j, "r": range(1, 9, 2)}
    copy = across(values)
    assert copy == values
    assert math.isnan(across(float("nan"))) and across(float("-inf")) == float("-inf")


def test_a_leaf_its_grad_and_a_detached_view_keep_their_relations():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x**2).sum().backward()
    copy = across({"x": x, "grad": x.grad, "detached": x.detach(), "clone": x.detach().clone()})
    assert copy["x"].is_leaf and copy["x"].requires_grad
    assert torch.equal(copy["x"].detach(), x.detach()) and torch.equal(copy["x"].grad, torch.tensor([2.0, 4.0, 6.0]))
    # one object with two names is one copy; a detached view shares the original's memory, a clone does not
    assert copy["grad"] is copy["x"].grad
    assert copy["detached"].untyped_storage().data_ptr() == copy["x"].untyped_storage().data_ptr()
    assert copy["clone"].untyped_storage().data_ptr() != copy["x"].untyped_storage().data_ptr()
    assert not copy["detached"].requires_grad


def test_dtype_parameters_and_views_are_kept():
    w = torch.nn.Parameter(torch.arange(6, dtype=torch.float64).reshape(2, 3))
    copy = across({"w": w, "column": w.detach()[:, 1], "dtype": torch.int32, "size": torch.Size([2, 3])})
    assert type(copy["w"]) is torch.nn.Parameter and copy["w"].dtype is torch.float64
    assert copy["column"].tolist() == [1.0, 4.0] and copy["column"].stride() == (3,)
    assert copy["dtype"] is torch.int32 and copy["size"] == torch.Size([2, 3])


def test_a_result_of_a_graph_is_a_non_leaf_that_names_its_node():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3).sum()
    copy = across({"x": x, "y": y})
    assert not copy["y"].is_leaf and copy["y"].requires_grad
    # named like the student's node, without torch's overload number: SumBackward0 becomes SumBackward
    assert type(y.grad_fn).__name__ == "SumBackward0" and type(copy["y"].grad_fn).__name__ == "SumBackward"
    assert copy["y"].item() == 9.0


def test_an_exception_keeps_its_class_message_and_where_it_was_raised():
    try:
        torch.tensor([1.0]).sum().backward()
    except RuntimeError as error:
        caught = error
    copy = across(caught)
    assert type(copy) is RuntimeError and str(copy) == str(caught)
    assert copy.__traceback__ is not None


def test_a_students_function_and_object_are_stand_ins_not_the_things_themselves():
    class Model:
        pass

    copy = across({"f": lambda v: v, "m": Model()})
    assert isinstance(copy["f"], StudentFunction) and isinstance(copy["m"], StudentObject)


# --------------------------------------------------------------------------------------- budgets
def test_the_kernel_stops_encoding_past_its_budget():
    with pytest.raises(TooLarge):
        Encoder(Handles(), 10_000).message(torch.zeros(100_000))


@pytest.mark.parametrize("stop", [10**12, 10**30])
def test_a_range_claiming_more_items_than_the_check_may_read_is_refused(stop):
    # torch.as_tensor(range(10**12)) in a check would loop in C for hours, beyond the reach of the check's alarm
    with pytest.raises(CheckTooLarge):
        rebuild([{"k": "range", "start": 0, "stop": stop, "step": 1}])
    assert across(range(1, 9, 2)) == range(1, 9, 2) and across(range(-5, 10**12, 10**11)) == range(-5, 10**12, 10**11)


def test_a_tensor_claiming_more_elements_than_the_check_may_read_is_never_allocated():
    objects = [
        {"k": "tensor", "dtype": "float32", "shape": [10**6, 10**6], "stride": [0, 0], "offset": 0,
         "storage": {"$": 1}, "requires_grad": False, "grad": None, "node": None},
        {"k": "storage", "b64": "AAAAAA=="},
    ]
    with pytest.raises(CheckTooLarge):
        rebuild(objects)


# ------------------------------------------------------------------------------- hostile messages
STORAGE = {"k": "storage", "b64": "AAAAAA=="}  # four bytes: one float32


def tensor_entry(**changes) -> dict:
    entry = {"k": "tensor", "dtype": "float32", "shape": [1], "stride": [1], "offset": 0, "storage": {"$": 1},
             "requires_grad": False, "grad": None, "node": None}
    entry.update(changes)
    return entry


HOSTILE = {
    "not a message": None,
    "objects not a list": {"root": None, "objects": {"0": {}}},
    "index past the end": {"root": {"$": 5}, "objects": []},
    "index of the wrong type": {"root": {"$": "0"}, "objects": [{"k": "list", "items": []}]},
    "unknown kind": {"root": {"$": 0}, "objects": [{"k": "pickle", "data": "..."}]},
    "unhashable dict key": {"root": {"$": 0}, "objects": [{"k": "dict", "items": [[{"$": 1}, 1]]}, {"k": "list", "items": []}]},
    "a view past its storage": {"root": {"$": 0}, "objects": [tensor_entry(shape=[1000]), STORAGE]},
    "a negative offset": {"root": {"$": 0}, "objects": [tensor_entry(offset=-4), STORAGE]},
    "a negative shape": {"root": {"$": 0}, "objects": [tensor_entry(shape=[-1]), STORAGE]},
    "an unknown dtype": {"root": {"$": 0}, "objects": [tensor_entry(dtype="os.system"), STORAGE]},
    "a storage that is not base64": {"root": {"$": 0}, "objects": [tensor_entry(), {"k": "storage", "b64": "!!"}]},
    "a tensor whose storage is a list": {"root": {"$": 0}, "objects": [tensor_entry(), {"k": "list", "items": []}]},
    "a grad that is not a tensor": {"root": {"$": 0}, "objects": [tensor_entry(requires_grad=True, grad="2.0"), STORAGE]},
    "nesting past the depth limit": {
        "root": {"$": 0},
        "objects": [{"k": "list", "items": [{"$": i + 1}]} for i in range(200)] + [{"k": "list", "items": []}],
    },
}


@pytest.mark.parametrize("message", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_message_the_grader_cannot_read_is_refused_as_malformed(message):
    with pytest.raises(MalformedValues):
        Mirror(NoKernel()).rebuild(message)


def test_a_cycle_is_rebuilt_as_a_cycle_not_followed_for_ever():
    copy = rebuild([{"k": "list", "items": [{"$": 0}]}])
    assert copy[0] is copy


def test_a_forged_exception_class_is_never_a_builtin_it_does_not_derive_from():
    entry = {"k": "exception", "name": "AssertionError", "bases": ["RuntimeError"], "module": "evil", "message": "",
             "args": [], "traceback": []}
    error = rebuild([entry])
    assert isinstance(error, RuntimeError) and not isinstance(error, AssertionError)


class Answering:
    """A judge's line to a kernel that answers every question with one reply."""

    told = False
    budget = BUDGET

    def __init__(self, reply: dict) -> None:
        self.reply = reply

    def ask(self, op: str, **fields):
        return self.reply


def test_names_the_check_did_not_ask_for_are_refused():
    # A patched kernel answering a fetch of `dy_dx` with `abs` or `__builtins__` too would shadow the judge's own.
    values = {"root": {"$": 0}, "objects": [{"k": "dict", "items": [["dy_dx", 1], ["abs", {"$": 1}]]},
                                            {"k": "callable", "h": 7, "name": "abs"}]}
    with pytest.raises(MalformedValues, match="did not ask for"):
        Mirror(Answering({"values": values})).fetch(["dy_dx"])
    assert Mirror(Answering({"values": values})).fetch(["dy_dx", "abs"])["dy_dx"] == 1


def test_reading_a_students_traceback_never_opens_the_files_it_names(tmp_path, monkeypatch):
    # The judge runs outside the sandbox: a check's traceback.extract_tb must not read the gradebook, a source
    # notebook or /dev/zero because a student's frame names it.
    import traceback

    secret = tmp_path / "gradebook.txt"
    secret.write_text("the hidden answer\n")
    frames = [[str(secret), 1, "f", "what the kernel said"], ["/dev/zero", 1, "g", ""], [str(secret), 99_999, "h", ""]]
    error = rebuild([{"k": "exception", "name": "RuntimeError", "bases": ["RuntimeError"], "module": "builtins",
                      "message": "", "args": [], "traceback": frames}])
    opened = []

    def refuse(name):
        opened.append(name)
        raise OSError("not to be opened")

    monkeypatch.setattr("tokenize.open", refuse)
    summary = traceback.extract_tb(error.__traceback__)
    monkeypatch.undo()
    assert [frame.line for frame in summary] == ["what the kernel said", "", ""]
    assert opened == []


def test_a_check_passes_the_bytes_of_its_arguments_not_of_their_whole_storage():
    from autograd_course.judge.mirror import Outgoing
    from autograd_course.sandbox.snapshot import Decoder

    def passed(*arguments):
        message = json.loads(json.dumps(Outgoing(Mirror(NoKernel())).message(list(arguments))))
        return Decoder(Handles()).message(message)

    table = torch.tensor([[1.5, -2.0], [6.0, -1.0]])  # a hidden input, and the expected output beside it
    (first,) = passed(table[0])
    assert first.tolist() == [1.5, -2.0] and first.untyped_storage().nbytes() == 8
    (second,) = passed(table[1])
    assert second.tolist() == [6.0, -1.0] and second.untyped_storage().nbytes() == 8
    # views of one storage still share it, with their strides, and the bytes between them
    column, corner, transposed = passed(table[:, 1], table[1, 0], table.t())
    assert column.tolist() == [-2.0, -1.0] and corner.item() == 6.0 and transposed.tolist() == [[1.5, 6.0], [-2.0, -1.0]]
    assert column.untyped_storage().data_ptr() == corner.untyped_storage().data_ptr() == transposed.untyped_storage().data_ptr()
    numbers = torch.arange(10, dtype=torch.float64)
    pair, words, empty = passed(numbers[3:5], numbers[3:5].view(torch.int32), numbers[9:9])
    assert pair.tolist() == [3.0, 4.0] and torch.equal(words, numbers[3:5].view(torch.int32)) and empty.numel() == 0
    assert pair.untyped_storage().nbytes() == 16


def shared_tuples(depth: int) -> list:
    """A tuple of two references to a tuple of two references to ...: 2**depth leaves in `depth` entries."""
    objects = [{"k": "tuple", "items": [{"$": index + 1}, {"$": index + 1}]} for index in range(depth)]
    return [*objects, {"k": "tuple", "items": ["leaf"]}]


@pytest.mark.parametrize("outer", ["tuple", "list", "frozenset", "dict key", "exception"])
def test_shared_parts_that_stand_for_more_than_the_check_may_read_are_refused(outer):
    # Forty entries that hash, repr or convert as 2**40 items, in C, out of the reach of the check's alarm:
    # str(RuntimeError(that)) alone held the judge until it was killed.
    objects = shared_tuples(40)
    root = {"$": 1000}
    if outer == "dict key":
        objects.append({"k": "dict", "items": [[{"$": 0}, 1]]})
    elif outer == "exception":
        objects.append({"k": "exception", "name": "RuntimeError", "bases": ["RuntimeError"], "module": "builtins",
                        "message": "", "args": [{"$": 0}], "traceback": []})
    else:
        objects.append({"k": outer, "items": [{"$": 0}]})
    root = {"$": len(objects) - 1}
    with pytest.raises(CheckTooLarge):
        rebuild(objects, root)


def test_parts_each_within_the_budget_are_counted_together():
    objects = shared_tuples(16)  # about 2**17 items, within the budget's quarter million
    objects += [{"k": "tuple", "items": [n, {"$": 0}]} for n in range(2)]
    objects.append({"k": "frozenset", "items": [{"$": len(objects) - 2}, {"$": len(objects) - 1}]})
    assert len(rebuild(objects, {"$": len(objects) - 2})) == 2
    with pytest.raises(CheckTooLarge):
        rebuild(objects, {"$": len(objects) - 1})


def test_shared_parts_within_the_budget_keep_their_sharing():
    copy = rebuild(shared_tuples(10))
    assert copy[0] is copy[1] and len(str(copy)) > 2**10
    row = [1.0] * 100
    copied = across({"rows": [row] * 100, "cycle": (cycle := [row]), "again": cycle})
    assert copied["rows"][0] is copied["rows"][99] and copied["cycle"] is copied["again"]


def test_shared_parts_are_counted_across_the_messages_of_one_check():
    mirror = Mirror(NoKernel())
    objects = shared_tuples(16)
    objects[0]["h"] = 5
    mirror.rebuild({"root": {"$": 0}, "objects": objects})  # within the budget on its own
    # a call's result: two tuples that each hold the copy of handle 5 (the first message's root)
    again = [{"k": "list", "items": [{"$": 1}, {"$": 2}]}, {"k": "tuple", "items": [0, {"$": 3}]},
             {"k": "tuple", "items": [1, {"$": 3}]}, {"k": "tuple", "items": [], "h": 5}]
    with pytest.raises(CheckTooLarge):
        mirror.rebuild({"root": {"$": 0}, "objects": again})


def test_a_graph_reaches_each_of_its_leaves_once():
    leaf = tensor_entry(requires_grad=True, h=1, storage={"$": 1})
    output = tensor_entry(h=2, storage={"$": 1},
                          node={"name": "AddBackward0", "leaves": [{"$": 2}] * 1000, "metadata": None, "backward_calls": 1})
    copy = rebuild([output, STORAGE, leaf])
    assert type(copy.grad_fn).__name__ == "AddBackward" and len(copy.grad_fn.next_functions) == 1
