"""Choose the run's model on dev: the best fine-tuned checkpoint, or the untouched base model when none beats it."""

from __future__ import annotations

from typing import Any

from embedtune.evaluation.metrics import display_name
from embedtune.runs import CHOSEN_BASE, CHOSEN_FINE_TUNED, Selection


def dev_history(log_history: list[dict[str, Any]], primary: str) -> list[dict[str, Any]]:
    """Extract the dev evaluations from the trainer's log history, in order.

    Args:
        log_history: ``trainer.state.log_history``; dev evaluations carry ``eval_dev_<metric>`` keys.
        primary: The primary metric, e.g. ``"ndcg@10"``.

    Returns:
        ``[{"step": int, "epoch": float, "<metric>": value, ...}]``; the first entry (step 0) is the untouched model.
    """
    history = []
    for entry in log_history:
        if f"eval_dev_{primary}" in entry:
            metrics = {k.removeprefix("eval_dev_"): v for k, v in entry.items() if k.startswith("eval_dev_")}
            history.append({"step": entry["step"], "epoch": round(entry.get("epoch") or 0.0, 4), **metrics})
    return history


def select_model(history: list[dict[str, Any]], primary: str) -> Selection:
    """Pick the best dev checkpoint by ``primary``; keep the base model unless a fine-tuned checkpoint beats it.

    Ties go to the base model (fine-tuning must earn its place), and among fine-tuned checkpoints to the earliest.

    Args:
        history: Output of :func:`dev_history`; entry 0 must be the step-0 (untouched model) evaluation.
        primary: The primary metric.

    Returns:
        The selection with its verdict line.

    Raises:
        ValueError: if the history has no step-0 evaluation or no fine-tuned evaluation.
    """
    if not history or history[0]["step"] != 0:
        raise ValueError("dev history has no evaluation of the untouched model at step 0")
    if len(history) < 2:
        raise ValueError("dev history has no evaluation of a fine-tuned checkpoint")
    base_dev = history[0][primary]
    best = max(history[1:], key=lambda entry: (entry[primary], -entry["step"]))
    delta = best[primary] - base_dev
    shown = display_name(primary)
    if delta > 0:
        verdict = (
            f"fine-tuning beat the base model on dev: {shown} {base_dev:.4f} -> {best[primary]:.4f} "
            f"(Δ {delta:+.4f}) at step {best['step']}; model/ is that checkpoint"
        )
        return Selection(CHOSEN_FINE_TUNED, best["step"], base_dev, best[primary], delta, verdict)
    verdict = f"fine-tuning did not beat the base model on dev: best Δ {shown} {delta:+.4f}; model/ is the base model"
    return Selection(CHOSEN_BASE, None, base_dev, best[primary], delta, verdict)
