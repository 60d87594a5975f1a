"""Plain-text reports of base vs fine-tuned metrics, and of several models side by side with a baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from embedtune.config.metric_names import display_name


def format_comparison(base: dict[str, float], fine_tuned: dict[str, float], split: str = "test") -> str:
    """Format base and fine-tuned metrics side by side with the difference.

    Args:
        base: Metric name -> value of the untouched base model.
        fine_tuned: Metric name -> value of the fine-tuned model (same keys).
        split: Split name shown in the header.

    Returns:
        A table, one metric per line.
    """
    width = max(len(name) for name in base) + 2
    lines = [f"{'metric (' + split + ')':<{width + 8}}{'base':>10}{'fine-tuned':>12}{'delta':>10}"]
    for name, base_value in base.items():
        tuned = fine_tuned[name]
        lines.append(f"{name:<{width + 8}}{base_value:>10.4f}{tuned:>12.4f}{tuned - base_value:>+10.4f}")
    return "\n".join(lines)


def format_side_by_side(
    models: Sequence[tuple[str, Mapping[str, float]]],
    baseline: tuple[str, Mapping[str, float]] | None = None,
    title: str = "metric",
) -> str:
    """Format several models' metrics in columns: the baseline first, then each model followed by its delta.

    Args:
        models: ``(label, metric name -> value)`` per model, in column order; every model has the metrics of the
            first (the rows, in its order).
        baseline: ``(label, metric name -> value)`` of the reference model, or ``None`` for no baseline column and
            no deltas.
        title: Header of the metric column, e.g. ``"scifact:test"``.

    Returns:
        A table: a header line, then one line per metric (``nDCG@10`` spelling), values to 4 decimals, deltas
        (model - baseline) signed.

    Raises:
        ValueError: if ``models`` is empty.
        KeyError: if a model or the baseline lacks a metric of the first model.
    """
    if not models:
        raise ValueError("no model to report")
    rows = list(models[0][1])
    names = {metric: _display(metric) for metric in rows}
    first = max(len(title), *(len(name) for name in names.values())) + 2
    header = f"{title:<{first}}"
    if baseline is not None:
        header += f"{baseline[0]:>{_width(baseline[0])}}"
    for label, _ in models:
        header += f"{label:>{_width(label)}}" + (f"{'delta':>10}" if baseline is not None else "")
    lines = [header.rstrip()]
    for metric in rows:
        line = f"{names[metric]:<{first}}"
        if baseline is not None:
            line += f"{baseline[1][metric]:>{_width(baseline[0])}.4f}"
        for label, values in models:
            line += f"{values[metric]:>{_width(label)}.4f}"
            if baseline is not None:
                line += f"{values[metric] - baseline[1][metric]:>+10.4f}"
        lines.append(line)
    return "\n".join(lines)


def _width(label: str) -> int:
    """Width of a value column headed by ``label``: the label plus two spaces, at least 10."""
    return max(10, len(label) + 2)


def _display(metric: str) -> str:
    """``"ndcg@10"`` -> ``"nDCG@10"``; any other name (``"ndcg@10@128d"``) as given."""
    try:
        return display_name(metric)
    except ValueError:
        return metric
