"""What happened to a notebook while it was graded: one typed outcome, recorded in the notebook itself.

Every stage that finds something (intake, the integrity check, the judge) records an `Outcome` in the notebook's
metadata; grades.csv, the table and the report read them back from the autograded notebook. The reasons are the
contract's status reasons (../shared/CONTRACT.md), in its order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from nbformat import NotebookNode

METADATA_KEY = "autograd_course"


class Reason(str, Enum):  # noqa: UP042 - StrEnum would change str(reason), which messages may show
    MISSING = "missing"
    INVALID = "invalid"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    RESOURCE_LIMIT = "resource_limit"
    TAMPERED = "tampered"
    LATE = "late"  # read from the gradebook when results are read, never recorded in a notebook
    ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    reason: Reason
    detail: str
    where: str | None = None  # the cell (its grade id) it concerns, if one

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", Reason(self.reason))

    def as_metadata(self) -> dict:
        record = {"kind": self.reason.value, "detail": self.detail}
        if self.where:
            record["where"] = self.where
        return record

    @classmethod
    def from_metadata(cls, record: dict) -> Outcome:
        return cls(Reason(record["kind"]), str(record.get("detail", "")), record.get("where"))

    def describe(self) -> str:
        return f"{self.where}: {self.detail}" if self.where else self.detail


def record(nb: NotebookNode, outcome: Outcome) -> None:
    kept = nb.metadata.setdefault(METADATA_KEY, {}).setdefault("events", [])
    entry = outcome.as_metadata()
    if entry not in kept:
        kept.append(entry)


def recorded(nb: NotebookNode) -> list[Outcome]:
    return [Outcome.from_metadata(entry) for entry in nb.metadata.get(METADATA_KEY, {}).get("events", [])]


def forget(nb: NotebookNode) -> None:
    """A submission arrives with no outcomes: a student cannot pre-seed what the grader records."""
    nb.metadata.pop(METADATA_KEY, None)
