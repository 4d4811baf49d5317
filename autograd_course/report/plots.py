"""The class report's plots, drawn from a `ClassData` with matplotlib's object API (no pyplot: no global state, no
GUI backend, safe in any process).

Each ``draw_*`` function returns a `matplotlib.figure.Figure`; `save` writes one as a PNG; `write_plots` writes
all three under their file names.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .data import ClassData, Item, number, short_name

DISTRIBUTION_PNG = "score_distribution.png"
QUESTIONS_PNG = "question_means.png"
PARTS_PNG = "part_credit.png"

#: figure sizes in inches, drawn at DPI: the PNGs are 1200x600, 1200x600 and 1200x825 pixels
DPI = 150
DISTRIBUTION_SIZE = (8.0, 4.0)
QUESTIONS_SIZE = (8.0, 4.0)
PARTS_SIZE = (8.0, 5.5)

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
FULL_COLOUR, PARTIAL_COLOUR, NONE_COLOUR = "#009E73", "#E69F00", "#D55E00"
MEAN_COLOUR, MAX_COLOUR = "#0072B2", "#444444"


def write_plots(data: ClassData, items: list[Item], folder: Path) -> list[Path]:
    """The three PNGs in ``folder``, each written whole or not at all."""
    figures = {
        DISTRIBUTION_PNG: draw_distribution(data),
        QUESTIONS_PNG: draw_questions(data),
        PARTS_PNG: draw_parts(items),
    }
    return [save(figure, folder / name) for name, figure in figures.items()]


def save(figure, path: Path) -> Path:
    temporary = path.with_name(path.name + ".tmp")
    figure.savefig(temporary, format="png", dpi=DPI, facecolor="white")
    temporary.replace(path)
    return path


def _figure(size):
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _style(axes) -> None:
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=9)


def draw_distribution(data: ClassData):
    """A histogram of the students' total points, with the maximum score and the class mean marked."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(DISTRIBUTION_SIZE)
    totals = [data.total(student) for student in data.students]
    top = max([data.max_score, *totals]) or 1.0
    bottom = min([0.0, *totals])
    width = max(1, math.ceil((top - bottom) / 20))
    edges = [bottom + width * index for index in range(math.ceil((top - bottom) / width) + 1)]
    if edges[-1] < top:
        edges.append(edges[-1] + width)
    counts, _, _ = axes.hist(totals, bins=edges, color=MEAN_COLOUR, edgecolor="white", linewidth=1, label="students")
    axes.axvline(data.max_score, color=NONE_COLOUR, linestyle="--", linewidth=2, label=f"max score ({number(data.max_score)})")
    if totals:
        mean = statistics.fmean(totals)
        axes.axvline(mean, color=MAX_COLOUR, linestyle=":", linewidth=2, label=f"class mean ({mean:.1f})")
    axes.set_xlim(bottom - width / 2, top + width)
    axes.set_ylim(0, max(1, *counts) * 1.08)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(f"Total score (points out of {number(data.max_score)})")
    axes.set_ylabel("Students")
    figure.suptitle(f"Distribution of total scores ({len(totals)} students)", fontsize=12, fontweight="bold")
    axes.legend(frameon=False, fontsize=9, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3)
    if not totals:
        axes.text(0.5, 0.5, "no students graded", transform=axes.transAxes, ha="center", color="grey")
    _style(axes)
    return figure


def draw_questions(data: ClassData):
    """Each question's mean points with ±1 standard deviation, over a dashed bar of its maximum."""
    figure, axes = _figure(QUESTIONS_SIZE)
    notebooks = data.notebooks
    positions = list(range(len(notebooks)))
    maxima = [data.notebook_max(notebook) for notebook in notebooks]
    means, lower, upper = [], [], []
    for notebook, ceiling in zip(notebooks, maxima, strict=True):
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
    for position, mean, ceiling in zip(positions, means, maxima, strict=True):
        axes.annotate(f"{mean:.1f}", (position, mean), xytext=(-20, -14), textcoords="offset points", ha="center",
                      color="white" if mean > 0.12 * max(maxima or [1]) else "black", fontsize=9, fontweight="bold",
                      zorder=4)
        axes.annotate(f"max {number(ceiling)}", (position, ceiling), xytext=(0, 3), textcoords="offset points",
                      ha="center", va="bottom", fontsize=8, color=MAX_COLOUR)
    axes.set_xticks(positions, [short_name(notebook) for notebook in notebooks])
    axes.set_ylim(0, max(maxima or [1]) * 1.25)
    axes.set_ylabel("Points")
    axes.set_xlabel("Question (notebook)")
    figure.suptitle("Mean score per question, with spread", fontsize=12, fontweight="bold")
    axes.legend(frameon=False, fontsize=8, loc="upper center", ncols=3)
    _style(axes)
    return figure


def draw_parts(items: list[Item]):
    """One stacked bar per part: the shares of students with full, partial and no credit."""
    from matplotlib.ticker import PercentFormatter

    figure, axes = _figure(PARTS_SIZE)
    labels = [f"{item.part.name} ({number(item.part.available)} pts)" for item in items]
    positions = list(range(len(items)))
    left = [0.0] * len(items)
    for attribute, colour, label in (("full", FULL_COLOUR, "full credit"), ("partial", PARTIAL_COLOUR, "partial credit"),
                                     ("none", NONE_COLOUR, "no credit")):
        shares = [item.share(getattr(item, attribute)) for item in items]
        axes.barh(positions, shares, left=left, color=colour, edgecolor="white", linewidth=0.8, height=0.72, label=label)
        for position, start, share in zip(positions, left, shares, strict=True):
            if share >= 0.08:
                axes.text(start + share / 2, position, f"{share:.0%}", ha="center", va="center", color="white",
                          fontsize=8, fontweight="bold")
        left = [start + share for start, share in zip(left, shares, strict=True)]
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
    return figure
