"""Figures: sample grids, loss curves, per-label FID bars and weak scaling, all from files in
``results/``."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from wcgan.atomic import atomic_path, check_png
from wcgan.errors import WcganError

# Label names are drawn as written: "$x^$" is not math to typeset (matplotlib failed on it).
matplotlib.rcParams["text.parse_math"] = False


def _log_scale(axes: plt.Axes, which: str, base: float = 10) -> None:
    """Put the `which` ("x" or "y") axis on a log scale whose tick labels are plain numbers.

    matplotlib typesets log ticks as math ("10^2"), which the setting above turns off: they
    would print as "$\\mathdefault{10^{2}}$".
    """
    getattr(axes, f"set_{which}scale")("log", base=base)
    axis = getattr(axes, f"{which}axis")
    axis.set_major_formatter(matplotlib.ticker.LogFormatter(base, labelOnlyBase=False))
    axis.set_minor_formatter(
        matplotlib.ticker.LogFormatter(base, labelOnlyBase=False, minor_thresholds=(1, 0.4))
    )


if TYPE_CHECKING:
    # Imported where used: the loss and score figures need no torch, whose import takes seconds.
    import torch

MIN_CELL_PIXELS = 48  # small images (8x8 digits) are enlarged so a grid is readable
LOSS_PANELS = {
    "wasserstein": "Wasserstein estimate\nE[D(real)] - E[D(fake)]",
    "critic_loss": "critic loss",
    "generator_loss": "generator loss",
}
FEW_LABELS = 10  # up to this many labels, the loss figure draws every label's own curve
WORST_DRAWN = 3  # beyond that, the curves of this many worst labels are drawn over the band
WORST_COLORS = ("tab:red", "tab:orange", "tab:purple")
TICKED_LABELS = 40  # up to this many labels, the FID figure names every label on its axis
WORST_NAMED = 5  # the FID figure names this many worst labels
TAIL_SPANS = 5  # a run's end: its last 5 spans (points of the curves), each 1 % of the longest run
LONGEST_NAME = 60  # characters of a label name a sample grid shows; a longer one keeps its ends
RANKED_COLUMNS = 4  # label grids per row in the figure of the worst and best labels
RANKED_PANEL_INCHES = 2.6  # each grid's width there: the figure's size does not follow the images'


def tile(images: torch.Tensor, columns: int, padding: int = 1) -> np.ndarray:
    """uint8 N x C x H x W -> one H' x W' x 3 uint8 mosaic, ``columns`` images per row (fewer
    when N is smaller), white between them."""
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=columns, padding=padding, pad_value=255)
    # make_grid returns a single image as it is: one channel stays one, so widen it here
    return grid.expand(3, -1, -1).permute(1, 2, 0).numpy()


def _enlarge(mosaic: np.ndarray, cell: int) -> Image.Image:
    image = Image.fromarray(mosaic)
    scale = max(1, math.ceil(MIN_CELL_PIXELS / cell))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def save_grid(images: torch.Tensor, path: str | os.PathLike, columns: int = 8) -> None:
    """A PNG grid of ``images``, enlarged with nearest-neighbour pixels when they are tiny."""
    with atomic_path(path) as tmp:
        _enlarge(tile(images, columns), images.shape[-1]).save(tmp, format="PNG")


def save_merged_grid(
    rows: Sequence[tuple[str, torch.Tensor]], path: str | os.PathLike, max_labels: int | None = None
) -> None:
    """One row of samples per label, the label's name on the left: the per-label generators
    read as one class-conditional generator. ``rows`` are (label, images) in label order; of
    more than ``max_labels`` labels, ``max_labels`` spread evenly over that order (the first
    and the last among them) are shown, and the title says how many of how many."""
    shown = [rows[i] for i in evenly_spread(len(rows), max_labels)]
    title = f"{max(len(images) for _, images in rows)} samples per label"
    if len(shown) < len(rows):
        step = (len(rows) - 1) / max(1, len(shown) - 1)
        title += (
            f"; {len(shown)} of {len(rows)} labels, evenly spaced in label order (one in about {step:.0f})"
        )
    save_compare_grid([("", shown)], path, title)


def evenly_spread(count: int, limit: int | None) -> list[int]:
    """Indices of at most ``limit`` of ``count`` items, evenly spaced, the first and (for a
    ``limit`` above 1) the last included; all of them when ``limit`` is None or not smaller."""
    if limit is None or count <= limit:
        return list(range(count))
    return np.linspace(0, count - 1, limit).round().astype(int).tolist()


def save_compare_grid(
    blocks: Sequence[tuple[str, Sequence[tuple[str, torch.Tensor]]]],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Merged sample grids side by side, one column block per scheme (named on top unless the
    name is empty), the same labels in the rows (named on the left): ``blocks`` is (scheme,
    [(label, images), ...])."""
    import torch

    names = [name for name, _ in blocks[0][1]]
    if any([name for name, _ in rows] != names for _, rows in blocks):
        raise ValueError("every block must show the same labels in the same order")
    per_row = max(len(images) for _, rows in blocks for _, images in rows)
    first = blocks[0][1][0][1]
    cell, blank = first.shape[-1], torch.full_like(first[:1], 255)
    mosaics = []
    for _, rows in blocks:
        padded = [torch.cat([images, blank.expand(per_row - len(images), -1, -1, -1)]) for _, images in rows]
        mosaics.append(tile(torch.cat(padded), per_row))
    gap = np.full((mosaics[0].shape[0], max(2, cell // 2), 3), 255, np.uint8)
    parts = [part for mosaic in mosaics for part in (mosaic, gap)][:-1]
    mosaic = _enlarge(np.concatenate(parts, axis=1), cell)
    scale = mosaic.width / sum(part.shape[1] for part in parts)
    named = any(scheme for scheme, _ in blocks)
    names = [_shortened(name) for name in names]
    # Wide enough for the widest name (drawn at 9 points), so none is cut at the figure's edge.
    widest = max(_text_width(name, 9) for name in names)
    dpi, margin_left, margin_top = 100, max(1.4, widest / 72 + 0.2), 0.6 if named else 0.4
    fig = plt.figure(
        figsize=(mosaic.width / dpi + margin_left + 0.1, mosaic.height / dpi + margin_top + 0.1), dpi=dpi
    )
    axis = fig.add_axes(
        (
            margin_left / fig.get_figwidth(),
            0.1 / fig.get_figheight(),
            mosaic.width / dpi / fig.get_figwidth(),
            mosaic.height / dpi / fig.get_figheight(),
        )
    )
    axis.imshow(mosaic, interpolation="nearest")
    row_height = mosaic.height / len(names)
    axis.set_yticks([row_height * (i + 0.5) for i in range(len(names))], names, fontsize=9)
    block_width, gap_width = mosaics[0].shape[1] * scale, gap.shape[1] * scale
    if named:
        axis.set_xticks(
            [(block_width + gap_width) * i + block_width / 2 for i in range(len(blocks))],
            [scheme for scheme, _ in blocks],
            fontsize=9,
        )
        axis.xaxis.tick_top()
    else:
        axis.set_xticks([])
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.05 / fig.get_figheight(), va="top")
    _save_figure(fig, path)


def plot_compare_fid(comparison: pd.DataFrame, label_fids: pd.DataFrame, path: str | os.PathLike) -> None:
    """Overall FID per scheme, one point per seed, over a box of the per-label FIDs (all
    seeds): ``label_fids`` has columns scheme, seed, label, fid."""
    schemes = list(dict.fromkeys(comparison["scheme"]))
    fig, axis = plt.subplots(figsize=(max(4.5, 1.3 * len(schemes) + 1.5), 3.8))
    positions = range(len(schemes))
    axis.boxplot(
        [label_fids.loc[label_fids["scheme"] == s, "fid"].dropna().to_numpy() for s in schemes],
        positions=list(positions),
        widths=0.5,
        showfliers=True,
        patch_artist=True,
        boxprops={"facecolor": "tab:blue", "alpha": 0.25},
        flierprops={"markersize": 3},
    )
    for i, scheme in zip(positions, schemes, strict=True):
        rows = comparison[comparison["scheme"] == scheme]
        offsets = np.linspace(-0.12, 0.12, len(rows)) if len(rows) > 1 else np.zeros(1)
        axis.scatter(
            i + offsets, rows["fid"], color="tab:red", zorder=3, s=30,
            label="all labels merged (one point per seed)" if i == 0 else None,
        )  # fmt: skip
    axis.set_xticks(list(positions), schemes)
    extractor = comparison["extractor"].iloc[0]
    axis.set_ylabel(f"FID ({extractor})")
    axis.set_title("overall FID per seed; boxes: per-label FID", fontsize=9)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_compare_curves(curves: pd.DataFrame, path: str | os.PathLike) -> None:
    """FID of all labels merged against the device-seconds spent, one line per scheme, seed and
    generator weights (a scheme's seeds share its colour; the moving average's solid, the raw
    weights' dashed): ``curves`` has columns scheme, seed, device_seconds, fid, extractor and
    weights (absent: raw), one row per snapshot point."""
    fig, axis = plt.subplots(figsize=(8, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curves = curves.assign(weights=curves.get("weights", "raw"))
    both = curves["weights"].nunique() > 1
    for i, (scheme, rows) in enumerate(curves.groupby("scheme", sort=False)):
        for weights, runs in rows.groupby("weights", sort=False):
            name = f"{scheme} (raw weights)" if both and weights == "raw" else scheme
            for j, (_, run) in enumerate(runs.groupby("seed")):
                axis.plot(
                    run["device_seconds"], run["fid"], marker="o", ms=3, lw=1.2, color=colors[i % len(colors)],
                    ls="--" if both and weights == "raw" else "-", label=name if j == 0 else None,
                )  # fmt: skip
    axis.set_xlabel("device-seconds of training (all jobs)")
    axis.set_ylabel(f"FID, all labels merged ({curves['extractor'].iloc[0]})")
    if (curves["fid"] > 0).all() and curves["fid"].max() > 20 * curves["fid"].min():
        _log_scale(axis, "y")
    axis.set_title("quality against compute; one line per seed", fontsize=9)
    axis.grid(alpha=0.3)
    # Beside the axes: inside, the curves of several schemes leave no free corner.
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_losses(histories: Sequence[tuple[str, pd.DataFrame]], path: str | os.PathLike) -> None:
    """The loss columns against generator iterations, one panel each, from ``histories``
    (label name, loss CSV as a frame). Every value is a label's mean over a span of 1 % of the
    iterations (single iterations in runs under 100; ``iteration_means``), so labels line up by
    iteration even when their runs have different lengths.

    The worst label is the one whose Wasserstein estimate at the end of its run lies farthest
    from the other labels' at the same iterations (``distance_from_median``): a critic that
    diverges, or one that no longer tells real from fake, leaves the crowd there; a run that
    merely ended earlier does not. Up to ``FEW_LABELS`` labels, every label's curve is drawn and
    named, the worst one thick; beyond that, the median over labels and the band of their
    10-90 % quantiles at each iteration, with the ``WORST_DRAWN`` worst labels' own curves."""
    columns = [column for column in LOSS_PANELS if all(column in frame for _, frame in histories)]
    few = len(histories) <= FEW_LABELS
    middles, wasserstein = iteration_means(histories, "wasserstein")
    distances = distance_from_median(wasserstein)
    worst = np.argsort(-distances, kind="stable")[: 1 if few else WORST_DRAWN]
    fig, axes = plt.subplots(len(columns), 1, figsize=(7, 2.4 * len(columns) + 1), sharex=True, squeeze=False)
    for axis, column in zip(axes[:, 0], columns, strict=True):
        means = wasserstein if column == "wasserstein" else iteration_means(histories, column)[1]
        if few:
            for i, (name, _) in enumerate(histories):
                thick = i == worst[0]
                axis.plot(middles, means[i], lw=2 if thick else 1, label=f"{name} (worst)" if thick else name)
        else:
            low, median, high = _label_quantiles(means)
            axis.fill_between(
                middles, low, high, color="tab:blue", alpha=0.25, lw=0, label="10-90 % of labels"
            )
            axis.plot(middles, median, color="tab:blue", lw=1.5, label="median over labels")
            for rank, i in enumerate(worst):
                axis.plot(
                    middles,
                    means[i],
                    color=WORST_COLORS[rank],
                    lw=1.2,
                    label=f"worst {rank + 1}: {histories[i][0]} ({distances[i]:.2g} spreads from the median)",
                )
        axis.set_ylabel(LOSS_PANELS[column])
        axis.grid(alpha=0.3)
    if few:  # each label's line named outright: a legend of its own leaves out names starting "_"
        lines = axes[0, 0].get_lines()
        names = [line.get_label() for line in lines]
        axes[0, 0].legend(lines, names, fontsize=7, ncol=2, title="label", title_fontsize=7)
    else:
        axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("generator iteration")
    ends = [int(frame["iteration"].iloc[-1]) for _, frame in histories]
    shown = "every label" if few else f"{len(histories)} labels: median and 10-90 % band at each iteration"
    ended = f"; runs end at iteration {min(ends)}-{max(ends)}" if min(ends) < max(ends) else ""
    fig.suptitle(
        f"{shown}{ended}\nworst: Wasserstein estimate over its last {TAIL_SPANS} points farthest"
        " from the labels' median at those points (in 10-90 % spreads)",
        fontsize=8,
    )
    fig.tight_layout()
    _save_figure(fig, path)


def distance_from_median(means: np.ndarray) -> np.ndarray:
    """How far each label's run ends from the others, from ``means`` (labels x spans of
    iterations, NaN after a run's end, from ``iteration_means``): the distance of the label's
    last ``TAIL_SPANS`` spans from the median over labels in the same spans, in units of the
    labels' 10-90 % spread there, averaged over those spans."""
    low, median, high = _label_quantiles(means)
    distance = np.abs(means - median) / np.maximum(high - low, np.finfo(float).tiny)
    drawn = ~np.isnan(means)
    spans_to_end = np.cumsum(drawn[:, ::-1], axis=1)[:, ::-1]  # drawn spans from here to the run's end
    tail = drawn & (spans_to_end <= TAIL_SPANS)
    return np.where(tail, distance, 0.0).sum(axis=1) / tail.sum(axis=1)


def _label_quantiles(means: np.ndarray) -> np.ndarray:
    """The 10 %, 50 % and 90 % quantiles over labels of each span, NaN where no run has rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a span no run reached: NaN, as wanted
        return np.nanquantile(means, [0.1, 0.5, 0.9], axis=0)


def iteration_means(
    histories: Sequence[tuple[str, pd.DataFrame]], column: str, spans: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Each label's mean of ``column`` over each of (up to) ``spans`` equal spans of generator
    iterations: the spans' middle iterations, and a labels x spans array, NaN where a label has
    no rows (its run ended earlier). Spans of iterations, not of rows, line labels up when their
    runs have different lengths; the means smooth the noisy single iterations."""
    iterations = [frame["iteration"].to_numpy() for _, frame in histories]
    first = min(int(steps.min()) for steps in iterations)
    length = max(int(steps.max()) for steps in iterations) - first + 1
    count = min(spans, length)
    width = length / count
    # One pass over all rows of all labels: thousands of labels stay fast.
    label_of_row = np.repeat(np.arange(len(histories)), [len(steps) for steps in iterations])
    span_of_row = ((np.concatenate(iterations) - first) // width).astype(int)
    cell = label_of_row * count + span_of_row
    values = np.concatenate([frame[column].to_numpy(float) for _, frame in histories])
    sums = np.bincount(cell, weights=values, minlength=len(histories) * count)
    rows = np.bincount(cell, minlength=len(histories) * count)
    with np.errstate(invalid="ignore"):  # 0 / 0: no rows, NaN
        means = (sums / rows).reshape(len(histories), count)
    return first + (np.arange(count) + 0.5) * width - 0.5, means


def plot_label_scores(table: pd.DataFrame, path: str | os.PathLike, metric: str = "fid") -> None:
    """Per-label ``metric`` (FID by default; higher is worse) from the metrics table, labels
    sorted worst first, the ``WORST_NAMED`` worst in red, with lines at the median over labels
    and at the value of all labels merged (when the table has it). Up to ``TICKED_LABELS``
    labels, a bar per label named on the axis; beyond that, the sorted values as one curve
    against the rank (on a log scale when it spans more than a factor 20), only the worst named.
    Labels without a value are counted in the title."""
    labels = table[table["scope"] == "label"]
    scored = labels[labels[metric].notna()].sort_values(metric, ascending=False, kind="stable")
    values, names = scored[metric].to_numpy(float), scored["label"].astype(str).tolist()
    ranks = np.arange(1, len(values) + 1)
    worst = min(WORST_NAMED, len(values))
    name = metric.upper()
    if len(values) <= TICKED_LABELS:
        fig, axis = plt.subplots(figsize=(max(5, 0.35 * len(values) + 1.5), 3.6))
        axis.bar(ranks, values, color=["tab:red"] * worst + ["tab:blue"] * (len(values) - worst))
        axis.set_xticks(ranks, names, rotation=0 if max(map(len, names)) <= 3 else 90, fontsize=7)
        axis.set_xlabel("label, worst first")
    else:
        fig, axis = plt.subplots(figsize=(8, 4.2))
        axis.fill_between(ranks, values, step="mid", color="tab:blue", alpha=0.3, lw=0)
        axis.plot(ranks, values, drawstyle="steps-mid", color="tab:blue", lw=1)
        axis.scatter(ranks[:worst], values[:worst], color="tab:red", s=12, zorder=3)
        for i in range(worst):
            # Stacked in a column beside the curve's high end: the worst lie too close to read apart.
            axis.annotate(
                f"{names[i]}: {values[i]:.3g}", xy=(ranks[i], values[i]), xytext=(0.25, 0.92 - 0.08 * i),
                textcoords="axes fraction", fontsize=7, va="center",
                arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.6},
            )  # fmt: skip
        axis.set_xlim(0, len(values) + 1)
        axis.set_xlabel(f"{len(values)} labels ranked by {name}, worst first")
        if values[-1] > 0 and values[0] > 20 * values[-1]:
            _log_scale(axis, "y")  # a few far-off labels would flatten all the others
    median = float(np.median(values))
    axis.axhline(median, color="black", ls=":", lw=1, label=f"median over labels: {median:.3g}")
    overall = table.loc[table["scope"] == "overall", metric]
    if len(overall):
        merged = float(overall.iloc[0])
        axis.axhline(merged, color="tab:red", ls="--", lw=1, label=f"all labels merged: {merged:.3g}")
    axis.legend(fontsize=8, loc="upper right")
    axis.set_ylabel(f"{name} ({table['extractor'].iloc[0]})")
    unscored = len(labels) - len(values)
    axis.set_title(
        f"per-label {name}, worst first; red: the {worst} worst"
        + (f"; {unscored} labels without a value left out" if unscored else ""),
        fontsize=9,
    )
    axis.tick_params(axis="x", labelsize=7)
    axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_ranked_grids(
    table: pd.DataFrame, grids: str | os.PathLike, path: str | os.PathLike, count: int, metric: str = "fid"
) -> None:
    """The sample grids (``grids``/<slug>.png, from ``save_grid``) of the ``count`` labels with
    the highest per-label ``metric`` (for FID, the worst) and of the ``count`` with the lowest,
    each named with its value and its rank, worst first; of 2 x ``count`` labels or fewer, every
    label, worst first. Labels without a value are left out and counted in the title. The
    figure's size follows ``count`` alone, not the labels or the image size: the report shows
    it instead of a grid per label."""
    labels = table[table["scope"] == "label"]
    scored = labels[labels[metric].notna()].sort_values(metric, ascending=False, kind="stable")
    scored = scored.assign(rank=np.arange(1, len(scored) + 1))
    total, unscored = len(scored), len(labels) - len(scored)
    name = f"{metric.upper()} ({table['extractor'].iloc[0]})"
    left_out = f"; {unscored} labels without a value left out" if unscored else ""
    if total <= 2 * count:
        blocks = [(f"every label by {name}, worst first{left_out}", scored)]
    else:
        blocks = [
            (f"the {count} worst of {total} labels by {name}, worst first{left_out}", scored.iloc[:count]),
            (f"the {count} best, best first", scored.iloc[::-1].iloc[:count]),
        ]
    images = {
        row.slug: _read_grid(grids, row.slug, row.label) for _, block in blocks for row in block.itertuples()
    }
    # Rows as tall as the grids (all of one shape in a run) and their titles: no gaps between.
    aspect = max([image.shape[0] / image.shape[1] for image in images.values()], default=1.0)
    title, panel = 0.3, RANKED_PANEL_INCHES
    rows = [max(1, math.ceil(len(block) / RANKED_COLUMNS)) for _, block in blocks]
    heights = [title + block_rows * (panel * aspect + title) for block_rows in rows]
    fig = plt.figure(figsize=(RANKED_COLUMNS * panel, sum(heights)))
    parts = fig.subfigures(len(blocks), 1, height_ratios=heights, squeeze=False)[:, 0]
    for part, (heading, block), block_rows, height in zip(parts, blocks, rows, heights, strict=True):
        part.suptitle(heading, fontsize=9, y=1 - 0.05 / height, va="top")
        axes = part.subplots(block_rows, RANKED_COLUMNS, squeeze=False)
        part.subplots_adjust(
            left=0.02, right=0.98, top=1 - 1.6 * title / height, bottom=0.01, wspace=0.08,
            hspace=title / (panel * aspect),
        )  # fmt: skip
        for axis in axes.ravel():
            axis.set_axis_off()
        for axis, row in zip(axes.ravel(), block.itertuples(), strict=False):
            axis.imshow(images[row.slug])
            axis.set_title(f"{row.rank}. {row.label}: {getattr(row, metric):.3g}", fontsize=8)
    _save_figure(fig, path)


def _read_grid(grids: str | os.PathLike, slug: str, label: str) -> np.ndarray:
    path = os.path.join(grids, f"{slug}.png")
    if not os.path.exists(path):
        raise WcganError(f"label '{label}' has no sample grid '{path}' (made by plot-grids)")
    with Image.open(check_png(path, "sample grid")) as grid:
        return np.asarray(grid.convert("RGB"))


def plot_weak_scaling(summary: pd.DataFrame, path: str | os.PathLike) -> None:
    """Time per job (mean, min-max bar) and efficiency T(1)/T(N) against N, one line per series,
    with the ideal flat line; the makespan efficiency dashed beside it."""
    fig, (times, efficiency) = plt.subplots(1, 2, figsize=(10, 3.8))
    for series, group in summary.groupby("series", sort=True):
        group = group.sort_values("n")
        spread = [group["time_mean_s"] - group["time_min_s"], group["time_max_s"] - group["time_mean_s"]]
        line = times.errorbar(
            group["n"], group["time_mean_s"], yerr=spread, marker="o", capsize=3, label=series
        )
        color = line[0].get_color()
        efficiency.plot(group["n"], group["efficiency"], marker="o", color=color, label=f"{series}: job time")
        efficiency.plot(
            group["n"], group["makespan_efficiency"], marker="s", ls="--", color=color, alpha=0.6,
            label=f"{series}: makespan",
        )  # fmt: skip
        apart = group[~group["concurrent"].astype(bool)]
        efficiency.scatter(
            apart["n"], apart["efficiency"], s=120, facecolors="white", edgecolors=color, zorder=3
        )
    if not summary["concurrent"].astype(bool).all():
        efficiency.scatter([], [], s=60, facecolors="white", edgecolors="grey", label="jobs did not overlap")
    efficiency.axhline(1.0, color="black", lw=1, ls=":", label="ideal")
    times.set_ylabel("time per job (s)")
    times.set_ylim(bottom=0)
    efficiency.set_ylabel("efficiency T(1) / T(N)")
    efficiency.set_ylim(0, max(1.15, 1.05 * summary[["efficiency", "makespan_efficiency"]].max().max()))
    for axis in (times, efficiency):
        _log_scale(axis, "x", base=2)
        axis.set_xticks(sorted(summary["n"].unique()))
        axis.set_xlabel("concurrent label jobs N")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.suptitle("Weak scaling: same work per label job (measured)", fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_job_time_split(summary: pd.DataFrame, parts: Sequence[str], path: str | os.PathLike) -> None:
    """Stacked bars of the mean seconds of each part of a job, one bar per series and N."""
    summary = summary.sort_values(["series", "n"])
    names = [f"{series}\nN={n}" for series, n in zip(summary["series"], summary["n"], strict=True)]
    fig, axis = plt.subplots(figsize=(max(5, 0.8 * len(names) + 2), 4))
    bottom = np.zeros(len(summary))
    for part in parts:
        values = summary[f"{part}_mean_s"].fillna(0.0).to_numpy()
        axis.bar(names, values, bottom=bottom, label=part if part != "queue" else "queue (not in T)")
        bottom += values
    axis.set_ylabel("mean seconds per job")
    axis.legend(
        fontsize=7, title="part of a job", title_fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left"
    )
    axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_scaling_projection(summary: pd.DataFrame, projection: pd.DataFrame, path: str | os.PathLike) -> None:
    """Makespan efficiency: measured points, and the projection to more jobs (median, 5-95 %)."""
    fig, axis = plt.subplots(figsize=(7, 4))
    for series, group in projection.groupby("series", sort=True):
        measured = summary[summary["series"] == series].sort_values("n")
        line = axis.plot(
            measured["n"], measured["makespan_efficiency"], marker="o", label=f"{series}: measured"
        )
        color = line[0].get_color()
        axis.plot(
            group["n"], group["makespan_efficiency_median"], ls="--", marker="x", color=color,
            label=f"{series}: PROJECTION from N={int(group['from_n'].iloc[0])} jobs (band: 5-95% of draws)",
        )  # fmt: skip
        axis.fill_between(
            group["n"],
            group["makespan_efficiency_p5"],
            group["makespan_efficiency_p95"],
            color=color,
            alpha=0.2,
        )
    axis.axhline(1.0, color="black", lw=1, ls=":", label="ideal")
    _log_scale(axis, "x")
    axis.set_ylim(0, max(1.15, 1.05 * summary["makespan_efficiency"].max()))
    axis.set_xlabel("label jobs N (one device each)")
    axis.set_ylabel("makespan efficiency T(1) / T(N)")
    axis.set_title(
        "PROJECTION (not measured): measured job times and submission rate, free devices assumed",
        fontsize=9,
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


def _shortened(name: str, limit: int = LONGEST_NAME) -> str:
    """A label name of at most ``limit`` characters: a longer one keeps its two ends."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    tail = limit - 1 - head
    return f"{name[:head]}…{name[len(name) - tail :]}"


def _text_width(text: str, size: float) -> float:
    """The width of ``text`` drawn literally at ``size`` points, in points."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _, _ = TextToPath().get_text_width_height_descent(text, FontProperties(size=size), ismath=False)
    return width


def _save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
