"""The class report's page: ``index.html``, rendered from a `ClassData` by the Jinja2 templates in templates/.

Autoescaping is on for every template, so whatever a student controls (their id, the failure messages their
notebooks raised, the notes about their files) reaches the page as text, never as markup. The page links the
plots and CSVs beside it by relative names and loads nothing from elsewhere (its Content-Security-Policy says so).
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace

from jinja2 import Environment, PackageLoader, StrictUndefined

from . import plots, tables
from .data import ClassData, Item, number, question

TEMPLATE = "index.html"
PAGE_MESSAGE_LIMIT = 240  # characters of a failure message shown (item_analysis.csv keeps more)
NOTES_LIMIT = 1000
OTHER_MESSAGES_SHOWN = 8  # per part


@dataclass
class Question:
    """One question (notebook) of the item analysis table: its parts and the class's points on it."""

    notebook: str
    maximum: float
    mean: str  # the class mean, formatted
    items: list[Item]


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def percent(share: float) -> str:
    return f"{share:.0%}"


@functools.cache
def environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("autograd_course.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt name fails the rendering instead of leaving a blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(number=number, question=question, clip=clip, percent=percent)
    return environment


def _mean(values: list[float], digits: int = 1) -> str:
    return f"{statistics.fmean(values):.{digits}f}" if values else "–"


def questions(data: ClassData, items: list[Item]) -> list[Question]:
    grouped: dict[str, list[Item]] = {}
    for item in items:
        grouped.setdefault(item.part.notebook, []).append(item)
    return [
        Question(
            notebook,
            data.notebook_max(notebook),
            _mean([data.notebook_points(student, notebook) for student in data.students]),
            notebook_items,
        )
        for notebook, notebook_items in grouped.items()
    ]


def render(data: ClassData, items: list[Item] | None = None, generated: datetime | None = None) -> str:
    """index.html's text. ``items`` defaults to ``data.items()``; ``generated`` to now."""
    items = data.items() if items is None else items
    totals = [data.total(student) for student in data.students]
    return environment().get_template(TEMPLATE).render(
        data=data,
        questions=questions(data, items),
        summary=SimpleNamespace(mean=_mean(totals), median=number(statistics.median(totals)) if totals else "–"),
        maximum=number(data.max_score),
        generated=(generated or datetime.now().astimezone()).strftime("%Y-%m-%d %H:%M %Z").strip(),
        files=SimpleNamespace(
            distribution=plots.DISTRIBUTION_PNG, questions=plots.QUESTIONS_PNG, parts=plots.PARTS_PNG,
            scores=tables.SCORES_CSV, item_analysis=tables.ITEM_ANALYSIS_CSV,
        ),
        limits=SimpleNamespace(message=PAGE_MESSAGE_LIMIT, notes=NOTES_LIMIT, other_messages=OTHER_MESSAGES_SHOWN),
    )
