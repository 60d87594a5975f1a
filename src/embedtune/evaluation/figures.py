"""The run report's figures: matplotlib on the Agg backend (no display needed), each written atomically as a PNG.

Every function takes plain numbers (as recorded in a run folder's JSON files) and a destination path, draws one
figure and writes it through a temporary file in the same folder and ``os.replace``, so that a reader never sees a
half-written image and a failed draw leaves the previous file in place. Each raises ``OSError`` when the file cannot
be written. Only the object-oriented ``Figure`` API is used (no pyplot state, nothing to close).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

from embedtune.io import atomic_file

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402 - the backend is chosen first

DPI = 110
"""Resolution of the written PNGs, in dots per inch."""
BASE_COLOR, TUNED_COLOR = "#9e9e9e", "#1f77b4"
SERIES_COLORS = ("#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
"""Bar colours in series order: the first (the base model in every figure that has one) is grey."""


def metric_bars(
    path: str | Path,
    base: Mapping[str, float],
    fine_tuned: Mapping[str, float],
    title: str,
    difference: tuple[str, float, float, float] | None = None,
) -> Path:
    """Draw base vs fine-tuned bars per metric; with ``difference``, a second panel shows its confidence interval.

    Args:
        path: Destination PNG.
        base: Metric name -> base model value (unitless, usually in ``[0, 1]``).
        fine_tuned: Metric name -> fine-tuned model value; metrics missing on one side get no bar there.
        title: Figure title.
        difference: ``(metric, mean difference, interval low, interval high)``: fine-tuned minus base on one metric
            with its bootstrap interval, drawn as a point with an error bar against zero.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    names = list(dict.fromkeys([*base, *fine_tuned]))
    figure = Figure(
        figsize=(max(6.0, 1.1 * len(names) + 2.5) + (2.6 if difference else 0.0), 4.0), layout="constrained"
    )
    if difference is None:
        bars = figure.add_subplot(1, 1, 1)
    else:
        grid = figure.add_gridspec(1, 2, width_ratios=[max(len(names), 2), 1.4])
        bars, interval = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1])
        metric, mean, low, high = difference
        interval.errorbar([0], [mean], yerr=[[max(mean - low, 0.0)], [max(high - mean, 0.0)]], fmt="o", capsize=8)
        interval.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        interval.set_xticks([0], [f"Δ {metric}"])
        interval.set_xlim(-1, 1)
        interval.set_title("fine-tuned − base, 95% CI", fontsize=9)
    _grouped_bars(bars, names, {"base": base, "fine-tuned": fine_tuned})
    bars.set_title(title, fontsize=10)
    return save_figure(figure, path)


def compare_bars(path: str | Path, series: Mapping[str, Mapping[str, float]], title: str) -> Path:
    """Draw one group of bars per metric, one bar per series (e.g. the base model, then each run's model).

    Args:
        path: Destination PNG.
        series: Label -> metric name -> value, in legend order; metrics are the union in first-seen order.
        title: Figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    names = list(dict.fromkeys(name for values in series.values() for name in values))
    figure = Figure(figsize=(max(6.0, (0.35 * len(series) + 0.5) * len(names) + 2.5), 4.0), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    _grouped_bars(axes, names, series)
    axes.set_title(title, fontsize=10)
    return save_figure(figure, path)


def delta_histogram(path: str | Path, deltas: Sequence[float], metric: str) -> Path:
    """Histogram of per-query differences (fine-tuned minus base) of one metric.

    Args:
        path: Destination PNG.
        deltas: One difference per query (unitless, in ``[-1, 1]`` for the usual metrics).
        metric: The metric's name, for the labels.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    figure = Figure(figsize=(6.5, 4.0), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    axes.hist(list(deltas), bins=min(40, max(5, len(deltas) // 3)), color=TUNED_COLOR, edgecolor="white")
    axes.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
    better, worse = sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)
    axes.set_title(f"Per-query Δ {metric} ({better} better, {worse} worse, {len(deltas) - better - worse} tied)")
    axes.set_xlabel(f"fine-tuned − base {metric}")
    axes.set_ylabel("queries")
    return save_figure(figure, path)


def score_histograms(path: str | Path, distributions: Mapping[str, Mapping[str, Sequence[float]]]) -> Path:
    """Histograms of cosine scores of positive and negative pairs, one panel per model.

    Args:
        path: Destination PNG.
        distributions: Model label (``"base"``, ``"fine_tuned"``) -> ``{"positive": [cosines], "negative":
            [cosines]}``; cosines in ``[-1, 1]``. Panels share the x axis.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    models = list(distributions)
    figure = Figure(figsize=(5.0 * max(len(models), 1), 3.8), layout="constrained")
    values = [v for groups in distributions.values() for scores in groups.values() for v in scores]
    low, high = (min(values), max(values)) if values else (-1.0, 1.0)
    edges = [low + (high - low + 1e-9) * i / 40 for i in range(41)]
    for index, model in enumerate(models, start=1):
        axes = figure.add_subplot(1, len(models), index)
        for kind, color in (("negative", "#d62728"), ("positive", "#2ca02c")):
            scores = list(distributions[model].get(kind, []))
            if scores:
                axes.hist(scores, bins=edges, alpha=0.55, color=color, label=f"{kind} ({len(scores)})", density=True)
        axes.set_title(model.replace("_", "-"))
        axes.set_xlabel("cosine score")
        axes.legend(fontsize=8)
    figure.suptitle("Cosine scores of positive and negative pairs")
    return save_figure(figure, path)


def training_curves(
    path: str | Path,
    loss_history: Sequence[Mapping[str, float]],
    dev_history: Sequence[Mapping[str, float]],
    metric: str,
    selected_step: int | None = None,
) -> Path:
    """Training loss (and its parts), learning rate and the dev metric against the training step.

    Args:
        path: Destination PNG.
        loss_history: ``[{"step", "loss", "learning_rate"?, "loss/<part>"?...}]`` as in ``metrics.json``.
        dev_history: ``[{"step", "epoch", "<metric>"...}]`` as in ``metrics.json`` (step 0 = untouched model).
        metric: The dev metric to plot (the primary metric).
        selected_step: Step of the kept checkpoint, marked with a dotted line; ``None`` for none.

    Returns:
        ``path`` as a :class:`~pathlib.Path`. Panels without data are left out.
    """
    panels = []
    if loss_history:
        panels.append("loss")
    if any("learning_rate" in entry for entry in loss_history):
        panels.append("learning rate")
    if any(metric in entry for entry in dev_history):
        panels.append(f"dev {metric}")
    figure = Figure(figsize=(4.6 * max(len(panels), 1), 3.6), layout="constrained")
    for index, panel in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        if panel == "loss":
            parts = list(dict.fromkeys(k for entry in loss_history for k in entry if k.startswith("loss/")))
            for key in ["loss", *parts]:
                _line(axes, loss_history, key, key, linewidth=1.6 if key == "loss" else 1.0)
            if parts:
                axes.legend(fontsize=8)
        elif panel == "learning rate":
            _line(axes, loss_history, "learning_rate", "learning rate")
            axes.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        else:
            _line(axes, dev_history, metric, f"dev {metric}", marker="o")
            if selected_step is not None:
                axes.axvline(selected_step, color="black", linestyle=":", linewidth=1, label="kept checkpoint")
                axes.legend(fontsize=8)
        axes.set_title(panel)
        axes.set_xlabel("step")
    return save_figure(figure, path)


def dimension_curve(
    path: str | Path,
    dimensions: Sequence[str],
    base: Sequence[float | None],
    fine_tuned: Sequence[float | None],
    metric: str,
) -> Path:
    """Draw a metric per embedding dimension (Matryoshka truncation), base and fine-tuned.

    Args:
        path: Destination PNG.
        dimensions: Axis labels in order, e.g. ``["64", "128", "256", "full"]``.
        base: The base model's value at each dimension (``None`` where not recorded).
        fine_tuned: The fine-tuned model's value at each dimension (``None`` where not recorded).
        metric: The metric's name, for the labels.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    for label, values, color in (("base", base, BASE_COLOR), ("fine-tuned", fine_tuned, TUNED_COLOR)):
        points = [(index, value) for index, value in enumerate(values) if value is not None]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", color=color, label=label)
    axes.set_xticks(range(len(dimensions)), list(dimensions))
    axes.set_xlabel("embedding dimensions kept")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per Matryoshka dimension")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``).

    Args:
        figure: The figure to write.
        path: Destination; its folder must exist.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: if the file cannot be written (the temporary file is removed, any previous file kept).
    """
    path = Path(path)
    with atomic_file(path, binary=True) as handle:
        figure.savefig(handle, format="png", dpi=DPI)
    return path


def _grouped_bars(axes, names: Sequence[str], series: Mapping[str, Mapping[str, float]]) -> None:
    """Draw ``series`` as grouped vertical bars over ``names``, value labels on top, legend above."""
    width = 0.8 / max(len(series), 1)
    for offset, (label, values) in enumerate(series.items()):
        positions = [i + (offset - (len(series) - 1) / 2) * width for i, n in enumerate(names) if n in values]
        heights = [values[n] for n in names if n in values]
        drawn = axes.bar(positions, heights, width, label=label, color=SERIES_COLORS[offset % len(SERIES_COLORS)])
        if len(series) <= 3:
            axes.bar_label(drawn, fmt="%.3f", fontsize=7, padding=1)
    axes.set_xticks(
        range(len(names)),
        list(names),
        rotation=30 if len(names) > 6 else 0,
        ha="right" if len(names) > 6 else "center",
    )
    axes.set_ylabel("value")
    axes.margins(y=0.12)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar


def _line(axes, history: Sequence[Mapping[str, float]], key: str, label: str, **style) -> None:
    """Plot ``key`` against ``step`` for the history entries that hold both."""
    points = [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
    if points:
        axes.plot(*zip(*points, strict=True), label=label, **style)
