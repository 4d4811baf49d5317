"""What happened to a notebook while it was graded, recorded in the notebook itself.

Every stage that finds something (intake, the integrity check, the sandboxed run) appends an event to the
notebook's metadata; grades.csv and the report read them back from the autograded notebook. The kinds are the
contract's status reasons.
"""

from __future__ import annotations

from nbformat import NotebookNode

KINDS = ("missing", "invalid", "timeout", "crashed", "resource_limit", "tampered", "late", "error")
#: `late` is read from the gradebook when grades.csv is written (grading.collect_rows), never recorded in a notebook
METADATA_KEY = "autograd_course"


def add_event(nb: NotebookNode, kind: str, detail: str, where: str | None = None) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown outcome kind {kind!r}")
    record = nb.metadata.setdefault(METADATA_KEY, {})
    events = record.setdefault("events", [])
    event = {"kind": kind, "detail": detail}
    if where:
        event["where"] = where
    if event not in events:
        events.append(event)


def events_of(nb: NotebookNode) -> list[dict]:
    return list(nb.metadata.get(METADATA_KEY, {}).get("events", []))


def reset_events(nb: NotebookNode) -> None:
    """A submission arrives with no events: a student cannot pre-seed what the grader records."""
    nb.metadata.pop(METADATA_KEY, None)
