"""Training steps/s with the model's own dropout and with ``train.dropout=0``, side by side in one process.

Any dropout inside attention keeps PyTorch's ``scaled_dot_product_attention`` off its fused CPU kernel (flash
attention takes no dropout there): each step materialises the ``(batch, heads, seq, seq)`` attention weights and
draws a random mask over them. Four set-ups train all-MiniLM-L6-v2 on SciFact's training pairs at batch 32, at the
precision ``train.precision: auto`` picks (bf16 autocast on CUDA and on CPUs with native bf16, else fp32):

- embedtune's set-up as ``embedtune train`` builds it (its mode preparation included), ``train.dropout=none``
  (the model's 0.1) and ``train.dropout=0``;
- a plain sentence-transformers Trainer + MNRL with the model as loaded, and with every dropout set to 0 (what an
  ST user gets with ``config_kwargs={"attention_probs_dropout_prob": 0, "hidden_dropout_prob": 0}``).

Whether dropout 0 keeps the fine-tuned model as good is a separate, whole-run question: docs/benchmarks.md holds
the SciFact runs that answer it.

    .venv/bin/python bench/dropout.py --steps 12
"""

from __future__ import annotations

import argparse
import sys

from speed import MODEL, SCIFACT, _mnrl, _st_arguments, _steps_per_second, append_line, run_setup


def dropout_part(steps: int, data=SCIFACT, model_name: str = MODEL) -> dict:
    """Train each set-up of the module docstring for ``steps`` steps and time it.

    Args:
        steps: Optimiser steps per set-up; the first two are not timed.
        data: A BEIR folder with ``qrels/train.tsv`` (SciFact by default).
        model_name: A model folder or name.

    Returns:
        ``{"precision": "bf16" | "fp32", "steps_per_s": {set-up: steps/s}, "embedtune_speedup": float,
        "st_speedup": float}``, each speed-up being steps/s with dropout 0 over steps/s with the model's dropout.
    """
    from embedtune.models.dropout import set_dropout
    from embedtune.training.arguments import mixed_precision

    precision = "bf16" if mixed_precision("auto")[1] else "fp32"
    results = {}
    for dropout in ("none", "0"):
        make, dataset, pairs = run_setup(
            data, [f"train.dropout={dropout}", f"train.max_steps={steps}", f"train.precision={precision}"]
        )
        results[f"embedtune, train.dropout={dropout}"] = _steps_per_second(make, dataset, model_name)

        def plain(model, folder, zero=dropout == "0"):
            if zero:
                set_dropout(model, 0.0)
            return _st_arguments(folder, steps, precision), _mnrl(model)

        results[f"sentence-transformers, dropout {'0' if dropout == '0' else 'as loaded'}"] = _steps_per_second(
            plain, pairs, model_name
        )
    names = list(results)
    return {
        "precision": precision,
        "steps_per_s": results,
        "embedtune_speedup": round(results[names[2]] / results[names[0]], 2),
        "st_speedup": round(results[names[3]] / results[names[1]], 2),
    }


def append_markdown(result: dict, steps: int) -> None:
    """Append one dated line with ``result``'s steps/s and speed-ups to docs/benchmarks.md."""
    body = (
        "steps/s "
        + ", ".join(f"{name} {value:.3f}" for name, value in result["steps_per_s"].items())
        + f"; dropout 0 is {result['embedtune_speedup']}x (embedtune) and {result['st_speedup']}x (ST)."
    )
    append_line("dropout.py", f"{steps} steps, {result['precision']}", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="Training steps per set-up (the first two not timed).")
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"SciFact not found at {SCIFACT}: this benchmark needs ../shared/datasets/scifact.")
    result = dropout_part(args.steps)
    print(result, flush=True)
    if not args.no_record:
        append_markdown(result, args.steps)


if __name__ == "__main__":
    main()
