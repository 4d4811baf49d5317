"""`autograd-course report`: what the class got right and wrong, from the gradebook.

``write_report(course)`` writes ``<course root>/reports/``:

- ``scores.csv``: one row per student and graded part (test cell): points earned and available;
- ``item_analysis.csv``: for every part, the shares of students with full, partial and no credit, the mean
  points, and the most common failure message (the error a failed test cell showed in the autograded notebooks)
  with how many students saw it;
- ``score_distribution.png``, ``question_means.png``, ``part_credit.png``: the plots;
- ``index.html``: one static page with the plots, the item analysis and the students whose status is not ok.

Scores come from nbgrader's gradebook; statuses from the rows `grade` just computed, else grades.csv, else the
outcomes recorded in the autograded notebooks (``results.read_class``). Every student is counted, including those
whose notebooks are missing or broken (they earn 0 on those parts); failure messages are counted from the
autograded notebooks as graded, so a missing notebook counts with the messages of the untouched release.

``report_after_grading(course, rows)``, printed by `autograd-course grade`, also writes the report.
"""

from __future__ import annotations

import csv
import html
import math
import re
import statistics
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat

from . import results
from .course import Course, CourseError

REPORT_DIR = "reports"
SCORES_CSV = "scores.csv"
ITEM_ANALYSIS_CSV = "item_analysis.csv"
DISTRIBUTION_PNG = "score_distribution.png"
QUESTIONS_PNG = "question_means.png"
PARTS_PNG = "part_credit.png"
INDEX_HTML = "index.html"

#: figure sizes in inches, drawn at DPI: the PNGs are 1200x600, 1200x600 and 1200x825 pixels
DPI = 150
DISTRIBUTION_SIZE = (8.0, 4.0)
QUESTIONS_SIZE = (8.0, 4.0)
PARTS_SIZE = (8.0, 5.5)

MESSAGE_LIMIT = 500  # characters of a failure message kept (the CSV); the page shows fewer
PAGE_MESSAGE_LIMIT = 240
NOTES_LIMIT = 1000
OTHER_MESSAGES_SHOWN = 8  # per part, on the page

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
FULL_COLOUR, PARTIAL_COLOUR, NONE_COLOUR = "#009E73", "#E69F00", "#D55E00"
MEAN_COLOUR, MAX_COLOUR = "#0072B2", "#444444"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Part:
    notebook: str
    name: str  # the test cell's grade_id
    available: float


@dataclass
class Student:
    student_id: str
    status: str = "ok"
    notes: str = ""
    earned: dict[str, float] = field(default_factory=dict)  # part name -> points

    def total(self) -> float:
        return sum(self.earned.values())


@dataclass
class Item:
    """One part's item analysis."""

    part: Part
    students: int
    full: int
    partial: int
    none: int
    mean: float
    failures: Counter  # failure message -> students who saw it

    def share(self, count: int) -> float:
        return count / self.students if self.students else 0.0

    @property
    def top_failure(self) -> tuple[str, int]:
        if not self.failures:
            return "", 0
        # most students first; among equals, the message first seen (notebooks are read in student order)
        return max(self.failures.items(), key=lambda item: item[1])


@dataclass
class ClassData:
    course: Course
    parts: list[Part]
    students: list[Student]
    max_score: float
    failures: dict[str, Counter]  # part name -> messages

    @property
    def notebooks(self) -> list[str]:
        return list(dict.fromkeys(part.notebook for part in self.parts))

    def items(self) -> list[Item]:
        items = []
        for part in self.parts:
            points = [student.earned.get(part.name, 0.0) for student in self.students]
            full = sum(1 for value in points if value >= part.available - 1e-9)
            none = sum(1 for value in points if value <= 1e-9 and part.available > 0)
            items.append(
                Item(
                    part=part,
                    students=len(points),
                    full=full,
                    partial=len(points) - full - none,
                    none=none,
                    mean=statistics.fmean(points) if points else 0.0,
                    failures=self.failures.get(part.name, Counter()),
                )
            )
        return items

    def notebook_points(self, student: Student, notebook: str) -> float:
        return sum(student.earned.get(part.name, 0.0) for part in self.parts if part.notebook == notebook)

    def notebook_max(self, notebook: str) -> float:
        return sum(part.available for part in self.parts if part.notebook == notebook)


def load_class(course: Course, rows: list[results.StudentResult] | None = None) -> ClassData:
    """Everything the report shows, read from the gradebook, the statuses and the autograded notebooks."""
    from nbgrader.api import MissingEntry

    if course.gradebook is not None and not course.gradebook.is_file():
        raise CourseError(f"there is no {course.gradebook}: run `autograd-course grade` first")
    earned: dict[str, dict[str, float]] = {}  # student id -> part name -> points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader 0.9.6 trips SQLAlchemy 2 autoflush warnings
        with results.open_gradebook(course) as gradebook:
            try:
                assignment = gradebook.find_assignment(course.assignment_id)
            except MissingEntry:
                raise CourseError(
                    f"the gradebook has no assignment {course.assignment_id!r}: run `autograd-course grade` first"
                ) from None
            parts = _parts(course, assignment)
            max_score = float(assignment.max_score)
            for submission in assignment.submissions:
                points = earned.setdefault(submission.student.id, {})
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        points[grade.name] = float(grade.score or 0.0)
    # The class is the one grades.csv lists (every folder under submitted/), so that the two always agree; a
    # student there without gradebook rows earned nothing. Only with no such list, the gradebook's students.
    statuses = _statuses(course, rows)
    if statuses is None:
        with results.open_gradebook(course) as gradebook:
            statuses = {row.student_id: (row.status, row.notes) for row in results.read_class(course, sorted(earned), gradebook)}
    students = {}
    for student_id, (status, notes) in statuses.items():
        points = earned.get(student_id, {})
        students[student_id] = Student(
            student_id, status or "ok", notes or "", {part.name: points.get(part.name, 0.0) for part in parts}
        )
    ordered = [students[student_id] for student_id in sorted(students)]
    return ClassData(course, parts, ordered, max_score, _failure_messages(course, parts, ordered))


def _statuses(course: Course, rows) -> dict[str, tuple[str, str]] | None:
    """student id -> (status, notes) for the class: `grade`'s rows, else grades.csv, else the students under
    submitted/ with the events in their autograded notebooks; None if there is none of these."""
    if rows is not None:
        return {row.student_id: (row.status, row.notes) for row in rows}
    if course.grades_csv.is_file():
        try:
            with open(course.grades_csv, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if {"student_id", "status", "notes"} <= set(reader.fieldnames or ()):
                    return {line["student_id"]: (line["status"], line["notes"]) for line in reader}
        except (OSError, UnicodeDecodeError, csv.Error):
            pass
    try:
        students = results.find_students(course)
    except CourseError:
        return None
    with results.open_gradebook(course) as gradebook:
        return {row.student_id: (row.status, row.notes) for row in results.read_class(course, students, gradebook)}


def _parts(course: Course, assignment) -> list[Part]:
    """The graded parts, question by question, each question's parts in notebook order."""
    from .catalog import part_points

    notebooks = {notebook.name: notebook for notebook in assignment.notebooks}
    order = [name for name in course.notebook_ids if name in notebooks] + sorted(set(notebooks) - set(course.notebook_ids))
    parts = []
    for name in order:
        cells = {cell.name: float(cell.max_score) for cell in notebooks[name].grade_cells}
        try:
            position = list(part_points(course, name))
        except (OSError, KeyError, ValueError):
            position = []
        for cell in sorted(cells, key=lambda cell: (position.index(cell) if cell in position else len(position), cell)):
            parts.append(Part(name, cell, cells[cell]))
    return parts


def failure_message(output) -> str:
    """What a failed check said: an assertion's message, else ``Error: message``."""
    name = str(output.get("ename") or "Error")
    value = _ANSI.sub("", str(output.get("evalue") or "")).strip()
    message = value if value and name == "AssertionError" else f"{name}: {value}" if value else name
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return message


def _failure_messages(course: Course, parts: list[Part], students: list[Student]) -> dict[str, Counter]:
    """part name -> Counter of the failure messages of the students who lost points on it."""
    from nbgrader import utils

    by_notebook: dict[str, list[Part]] = {}
    for part in parts:
        by_notebook.setdefault(part.notebook, []).append(part)
    messages: dict[str, Counter] = {part.name: Counter() for part in parts}
    for student in students:
        for notebook, notebook_parts in by_notebook.items():
            lost = {part.name for part in notebook_parts if student.earned.get(part.name, 0.0) < part.available - 1e-9}
            if not lost:
                continue
            path = course.autograded_dir / student.student_id / course.assignment_id / f"{notebook}.ipynb"
            try:
                nb = nbformat.read(path, 4)
            except Exception:  # noqa: BLE001 - no graded notebook: its status says why
                continue
            for cell in nb.cells:
                if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
                    continue
                name = cell.metadata["nbgrader"].get("grade_id")
                if name not in lost:
                    continue
                errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
                if errors:
                    messages[name][failure_message(errors[0])] += 1
                    lost.discard(name)  # a cell counted once per student
    return messages


# -------------------------------------------------------------------------------------------- writing
def write_report(course: Course, rows: list[results.StudentResult] | None = None) -> Path:
    """Write reports/ (CSVs, plots and index.html) and return the path of index.html."""
    return _write(load_class(course, rows))


def _write(data: ClassData) -> Path:
    folder = data.course.root / REPORT_DIR
    folder.mkdir(exist_ok=True)
    items = data.items()
    _write_scores_csv(data, folder / SCORES_CSV)
    _write_items_csv(items, folder / ITEM_ANALYSIS_CSV)
    _plot_distribution(data, folder / DISTRIBUTION_PNG)
    _plot_questions(data, folder / QUESTIONS_PNG)
    _plot_parts(items, folder / PARTS_PNG)
    page = folder / INDEX_HTML
    _replace(page, _html(data, items))
    return page


def _number(value: float) -> str:
    return f"{round(value, 4):g}"


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8", errors="backslashreplace")
    temporary.replace(path)


def _write_csv(path: Path, header: list[str], lines: list[list]) -> None:
    results.write_csv(path, header, lines)


def _write_scores_csv(data: ClassData, path: Path) -> None:
    _write_csv(
        path,
        ["student_id", "notebook", "part", "points_earned", "points_available"],
        [
            [student.student_id, part.notebook, part.name, _number(student.earned[part.name]), _number(part.available)]
            for student in data.students
            for part in data.parts
        ],
    )


ITEM_COLUMNS = [
    "notebook", "part", "points_available", "students", "full_credit_share", "partial_credit_share",
    "no_credit_share", "mean_points", "failed_students", "most_common_failure", "most_common_failure_count",
]


def _write_items_csv(items: list[Item], path: Path) -> None:
    lines = []
    for item in items:
        message, count = item.top_failure
        lines.append(
            [
                item.part.notebook, item.part.name, _number(item.part.available), item.students,
                _number(item.share(item.full)), _number(item.share(item.partial)), _number(item.share(item.none)),
                _number(item.mean), sum(item.failures.values()), message, count,
            ]
        )
    _write_csv(path, ITEM_COLUMNS, lines)


# ---------------------------------------------------------------------------------------------- plots
def _figure(size):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, safe in any process

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _style(axes) -> None:
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=9)


def _save(figure, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    figure.savefig(temporary, format="png", dpi=DPI, facecolor="white")
    temporary.replace(path)


def _short_name(notebook: str) -> str:
    """q6_basic_gradients -> 'Q6\\nbasic gradients'"""
    head, _, rest = notebook.partition("_")
    return f"{head.upper()}\n{rest.replace('_', ' ')}" if rest else head


def _plot_distribution(data: ClassData, path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(DISTRIBUTION_SIZE)
    totals = [student.total() for student in data.students]
    top = max([data.max_score, *totals]) or 1.0
    bottom = min([0.0, *totals])
    width = max(1, math.ceil((top - bottom) / 20))
    edges = [bottom + width * index for index in range(math.ceil((top - bottom) / width) + 1)]
    if edges[-1] < top:
        edges.append(edges[-1] + width)
    counts, _, _ = axes.hist(totals, bins=edges, color=MEAN_COLOUR, edgecolor="white", linewidth=1, label="students")
    axes.axvline(data.max_score, color=NONE_COLOUR, linestyle="--", linewidth=2, label=f"max score ({_number(data.max_score)})")
    if totals:
        mean = statistics.fmean(totals)
        axes.axvline(mean, color=MAX_COLOUR, linestyle=":", linewidth=2, label=f"class mean ({mean:.1f})")
    axes.set_xlim(bottom - width / 2, top + width)
    axes.set_ylim(0, max(1, *counts) * 1.08)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(f"Total score (points out of {_number(data.max_score)})")
    axes.set_ylabel("Students")
    figure.suptitle(f"Distribution of total scores ({len(totals)} students)", fontsize=12, fontweight="bold")
    axes.legend(frameon=False, fontsize=9, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3)
    if not totals:
        axes.text(0.5, 0.5, "no students graded", transform=axes.transAxes, ha="center", color="grey")
    _style(axes)
    _save(figure, path)


def _plot_questions(data: ClassData, path: Path) -> None:
    figure, axes = _figure(QUESTIONS_SIZE)
    notebooks = data.notebooks
    positions = list(range(len(notebooks)))
    maxima = [data.notebook_max(notebook) for notebook in notebooks]
    means, lower, upper = [], [], []
    for notebook, ceiling in zip(notebooks, maxima):
        points = [data.notebook_points(student, notebook) for student in data.students]
        mean = statistics.fmean(points) if points else 0.0
        spread = statistics.pstdev(points) if len(points) > 1 else 0.0
        means.append(mean)
        lower.append(min(spread, mean))  # the bar stays within 0..max
        upper.append(max(0.0, min(spread, ceiling - mean)))
    axes.bar(positions, maxima, width=0.62, color="#e9ecef", edgecolor=MAX_COLOUR, linestyle="--", linewidth=1,
             label="max points", zorder=1)
    axes.bar(positions, means, width=0.62, color=MEAN_COLOUR, label="class mean", zorder=2)
    axes.errorbar(positions, means, yerr=[lower, upper], fmt="none", ecolor="black", elinewidth=1.5, capsize=6,
                  label="±1 standard deviation", zorder=3)
    for position, mean, ceiling in zip(positions, means, maxima):
        axes.annotate(f"{mean:.1f}", (position, mean), xytext=(-20, -14), textcoords="offset points", ha="center",
                      color="white" if mean > 0.12 * max(maxima or [1]) else "black", fontsize=9, fontweight="bold",
                      zorder=4)
        axes.annotate(f"max {_number(ceiling)}", (position, ceiling), xytext=(0, 3), textcoords="offset points",
                      ha="center", va="bottom", fontsize=8, color=MAX_COLOUR)
    axes.set_xticks(positions, [_short_name(notebook) for notebook in notebooks])
    axes.set_ylim(0, max(maxima or [1]) * 1.25)
    axes.set_ylabel("Points")
    axes.set_xlabel("Question (notebook)")
    figure.suptitle("Mean score per question, with spread", fontsize=12, fontweight="bold")
    axes.legend(frameon=False, fontsize=8, loc="upper center", ncols=3)
    _style(axes)
    _save(figure, path)


def _plot_parts(items: list[Item], path: Path) -> None:
    from matplotlib.ticker import PercentFormatter

    figure, axes = _figure(PARTS_SIZE)
    labels = [f"{item.part.name} ({_number(item.part.available)} pts)" for item in items]
    positions = list(range(len(items)))
    left = [0.0] * len(items)
    for attribute, colour, label in (("full", FULL_COLOUR, "full credit"), ("partial", PARTIAL_COLOUR, "partial credit"),
                                     ("none", NONE_COLOUR, "no credit")):
        shares = [item.share(getattr(item, attribute)) for item in items]
        axes.barh(positions, shares, left=left, color=colour, edgecolor="white", linewidth=0.8, height=0.72, label=label)
        for position, start, share in zip(positions, left, shares):
            if share >= 0.08:
                axes.text(start + share / 2, position, f"{share:.0%}", ha="center", va="center", color="white",
                          fontsize=8, fontweight="bold")
        left = [start + share for start, share in zip(left, shares)]
    axes.set_yticks(positions, labels, fontsize=8)
    axes.invert_yaxis()  # the first part at the top, as in the notebooks
    axes.set_xlim(0, 1)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel("Share of students")
    figure.suptitle("Credit on each graded part", fontsize=12, fontweight="bold")
    for index in range(1, len(items)):  # a thin line between questions
        if items[index].part.notebook != items[index - 1].part.notebook:
            axes.axhline(index - 0.5, color=MAX_COLOUR, linewidth=0.8, linestyle=":")
    axes.legend(frameon=False, fontsize=9, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3)
    _style(axes)
    _save(figure, path)


# ----------------------------------------------------------------------------------------------- page
def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --full: #009E73; --partial: #E69F00; --none: #D55E00;
        --accent: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0; background: #f5f7fa; color: var(--ink); font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
       Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 20px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px; }
.card .value { font-size: 24px; font-weight: 700; }
.card .label { color: var(--muted); font-size: 13px; }
.card.warn .value { color: var(--none); }
.plots { display: grid; gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 10px; }
figure img { display: block; width: 100%; max-width: 960px; height: auto; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13px; padding: 6px 6px 0; text-align: center; }
.table-wrap { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 10px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { padding: 7px 10px; text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); }
th { background: #eef2f7; font-weight: 600; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.id, td.part { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
td.part { white-space: nowrap; }
td.id { overflow-wrap: anywhere; max-width: 320px; }
tr.group th { background: #dfe7f1; font-size: 14px; text-align: left; position: static; }
tr.group .nb { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-weight: 400; font-size: 13px; }
td.msg { min-width: 260px; overflow-wrap: anywhere; }
.count { display: inline-block; margin-left: 6px; padding: 0 7px; border-radius: 9px; background: #fde8dc;
         color: #8a3400; font-size: 12px; font-weight: 600; white-space: nowrap; }
.none-text { color: var(--muted); }
.bar { display: flex; width: 110px; height: 14px; border-radius: 3px; overflow: hidden; background: var(--line);
       margin-top: 3px; }
.bar span { display: block; height: 100%; }
.bar .f { background: var(--full); } .bar .p { background: var(--partial); } .bar .n { background: var(--none); }
.status { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; color: #8a3400;
          white-space: nowrap; }
.ok { color: var(--full); font-weight: 600; }
td.status.ok { font-weight: 400; }
details summary { cursor: pointer; margin: 8px 0; color: var(--accent); }
td.msg details summary { margin: 4px 0 0; font-size: 13px; }
td.msg ul { margin: 4px 0 0; padding-left: 18px; font-size: 13px; }
.files { color: var(--muted); font-size: 13px; }
code { font-size: 13px; }
"""


def _html(data: ClassData, items: list[Item]) -> str:
    totals = [student.total() for student in data.students]
    not_ok = [student for student in data.students if student.status != "ok"]
    mean = f"{statistics.fmean(totals):.1f}" if totals else "–"
    median = _number(statistics.median(totals)) if totals else "–"
    maximum = _number(data.max_score)
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    course_id = data.course.config.CourseDirectory.get("course_id", "")

    cards = "".join(
        f'<div class="card{extra}"><div class="value">{_e(value)}</div><div class="label">{_e(label)}</div></div>'
        for value, label, extra in (
            (len(data.students), "students", ""),
            (f"{mean} / {maximum}", "mean score", ""),
            (f"{median} / {maximum}", "median score", ""),
            (len(not_ok), "students not ok (see below)", " warn" if not_ok else ""),
        )
    )

    body = []
    for index, item in enumerate(items):
        notebook = item.part.notebook
        if index == 0 or items[index - 1].part.notebook != notebook:
            points = [data.notebook_points(student, notebook) for student in data.students]
            question_mean = f"{statistics.fmean(points):.1f}" if points else "–"
            body.append(
                f'<tr class="group"><th colspan="8">{_e(_short_name(notebook).splitlines()[0])} · '
                f'<span class="nb">{_e(notebook)}</span> · {_e(_number(data.notebook_max(notebook)))} points · '
                f"class mean {_e(question_mean)}</th></tr>"
            )
        full, partial, none = (item.share(count) for count in (item.full, item.partial, item.none))
        message, count = item.top_failure
        failed = sum(item.failures.values())
        failure = (
            f'{_e(_clip(message, PAGE_MESSAGE_LIMIT))} <span class="count" '
            f'title="{count} of the {failed} students whose check failed saw this message">{count} of {failed}</span>'
            if message else '<span class="none-text">—</span>'
        )
        if len(item.failures) > 1:
            ranked = sorted(item.failures.items(), key=lambda pair: -pair[1])  # stable: ties keep first-seen order
            shown = "".join(
                f'<li>{_e(_clip(text, PAGE_MESSAGE_LIMIT))} <span class="count">{seen}</span></li>'
                for text, seen in ranked[:OTHER_MESSAGES_SHOWN]
            )
            more = len(ranked) - OTHER_MESSAGES_SHOWN
            if more > 0:
                shown += f'<li class="none-text">and {more} more (item_analysis.csv keeps the most common)</li>'
            failure += f"<details><summary>all {len(ranked)} messages</summary><ul>{shown}</ul></details>"
        body.append(
            "<tr>"
            f'<td class="part">{_e(item.part.name)}</td>'
            f'<td class="num">{_e(_number(item.part.available))}</td>'
            f'<td class="num">{full:.0%}</td><td class="num">{partial:.0%}</td><td class="num">{none:.0%}</td>'
            f'<td><div class="bar" title="full {full:.0%}, partial {partial:.0%}, none {none:.0%}">'
            f'<span class="f" style="width:{full * 100:.1f}%"></span>'
            f'<span class="p" style="width:{partial * 100:.1f}%"></span>'
            f'<span class="n" style="width:{none * 100:.1f}%"></span></div></td>'
            f'<td class="num">{item.mean:.2f}</td>'
            f'<td class="msg">{failure}</td>'
            "</tr>"
        )

    if not_ok:
        attention = (
            '<div class="table-wrap"><table id="not-ok"><thead><tr><th>Student</th><th>Status</th><th>Notes</th>'
            '<th class="num">Score</th></tr></thead><tbody>'
            + "".join(
                "<tr>"
                f'<td class="id">{_e(student.student_id)}</td>'
                f'<td class="status">{"<br>".join(_e(item) for item in student.status.split(";"))}</td>'
                f'<td class="msg">{"<br>".join(_e(note) for note in _clip(student.notes, NOTES_LIMIT).split(" | "))}</td>'
                f'<td class="num">{_e(_number(student.total()))} / {maximum}</td>'
                "</tr>"
                for student in not_ok
            )
            + "</tbody></table></div>"
        )
    else:
        attention = '<p id="not-ok" class="ok">Every student\'s notebooks were graded as submitted (status ok).</p>'

    notebook_headers = "".join(f'<th class="num">{_e(_short_name(nb).splitlines()[0])}</th>' for nb in data.notebooks)
    student_rows = "".join(
        "<tr>"
        f'<td class="id">{_e(student.student_id)}</td>'
        + "".join(f'<td class="num">{_e(_number(data.notebook_points(student, nb)))}</td>' for nb in data.notebooks)
        + f'<td class="num"><strong>{_e(_number(student.total()))}</strong> / {maximum}</td>'
        f'<td class="status{" ok" if student.status == "ok" else ""}">{_e(student.status)}</td>'
        "</tr>"
        for student in data.students
    )

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self'; style-src 'unsafe-inline'">
<title>{_e(data.course.assignment_id)}: class report</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{_e(data.course.assignment_id)}: class report</h1>
<p class="sub">{_e(course_id)} · {len(data.students)} students · {len(data.parts)} graded parts in {len(data.notebooks)}
 notebooks · generated {_e(generated)}</p>
<div class="cards">{cards}</div>

<h2>Scores</h2>
<div class="plots">
<figure><img src="{DISTRIBUTION_PNG}" alt="Histogram of the students' total scores, with the maximum score marked">
<figcaption>Total scores; the dashed line is the maximum ({maximum} points).</figcaption></figure>
<figure><img src="{QUESTIONS_PNG}" alt="Mean score per question with one standard deviation, and each question's maximum">
<figcaption>Mean points per question; error bars show ±1 standard deviation, dashed outlines the maximum.</figcaption></figure>
<figure><img src="{PARTS_PNG}" alt="Share of students with full, partial and no credit on each graded part">
<figcaption>Full, partial and no credit on each graded part (test cell).</figcaption></figure>
</div>

<h2>Item analysis</h2>
<div class="table-wrap"><table id="item-analysis">
<thead><tr><th>Part (test cell)</th><th class="num">Points</th><th class="num">Full credit</th>
<th class="num">Partial</th><th class="num">No credit</th><th>Credit</th><th class="num">Mean points</th>
<th>Most common failure message (students)</th></tr></thead>
<tbody>
{"".join(body)}
</tbody></table></div>

<h2>Students not ok ({len(not_ok)})</h2>
{attention}

<h2>All students</h2>
<details><summary>Show the {len(data.students)} students' scores per question</summary>
<div class="table-wrap"><table id="all-students">
<thead><tr><th>Student</th>{notebook_headers}<th class="num">Total</th><th>Status</th></tr></thead>
<tbody>{student_rows}</tbody></table></div>
</details>

<p class="files">Data: <a href="{SCORES_CSV}">{SCORES_CSV}</a> (points per student and part) ·
<a href="{ITEM_ANALYSIS_CSV}">{ITEM_ANALYSIS_CSV}</a> · grades and statuses: <code>grades.csv</code> in the course root.</p>
</main>
</body>
</html>
"""


# -------------------------------------------------------------------------------------------- summary
def report_after_grading(course: Course, rows: list[results.StudentResult]) -> list[str]:
    """A few lines for the end of `autograd-course grade`. Writes the report too, and says where it is."""
    lines = []
    totals = [row.score for row in rows]
    maximum = _number(rows[0].max_score) if rows else "?"
    if totals:
        lines.append(
            f"class: {len(totals)} students, mean {statistics.fmean(totals):.1f}/{maximum}, "
            f"median {_number(statistics.median(totals))}/{maximum}"
        )
    else:
        lines.append("class: no students graded")
    not_ok = [row for row in rows if row.status != "ok"]
    lines.append(
        f"not ok: {len(not_ok)} of {len(rows)} students (see the status and notes columns of grades.csv)"
        if not_ok else "not ok: none, every student's notebooks were graded as submitted"
    )
    try:
        data = load_class(course, rows)
    except Exception as error:  # noqa: BLE001 - grading is done and saved; the summary must not undo that
        lines.append(f"report not written: {error}")
        return lines
    failed = sorted(
        (item for item in data.items() if item.full < item.students),
        key=lambda item: (-(item.students - item.full), item.mean / item.part.available if item.part.available else 0),
    )[:3]
    if failed:
        lines.append(
            "most often failed: "
            + ", ".join(f"{item.part.name} ({item.students - item.full} of {item.students} without full credit)" for item in failed)
        )
    elif data.students:
        lines.append("most often failed: none, every part earned full credit")
    try:
        page = _write(data)
    except Exception as error:  # noqa: BLE001
        lines.append(f"report not written: {error}")
    else:
        lines.append(f"report: {page} (and the CSVs and plots beside it)")
    return lines
