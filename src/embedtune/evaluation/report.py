"""Plain-text reports of base vs fine-tuned metrics."""

from __future__ import annotations


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
