"""torch.compile for the training step: embedtune's SciFact set-up trained eagerly and compiled, side by side.

The set-up is the one ``embedtune train`` builds for SciFact's default run (row labels, false-negative table,
symmetric InfoNCE, callbacks) with all-MiniLM-L6-v2, batch 32, at ``--precision`` (auto: bf16 autocast where the CPU
or GPU has it natively). The compiled side sets transformers' ``torch_compile`` (inductor; sentence-transformers puts
the compiled model into the loss), so the shapes that vary (query lengths) are handled by inductor's automatic
dynamic shapes. Printed: each side's median step time over the steps after the first ``--warmup``, the wall time of
all steps (compiling included), the ratios, and how many graphs dynamo compiled (0 would mean nothing was compiled);
nothing is recorded::

    .venv/bin/python bench/compile_train.py --steps 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from speed import MODEL, SCIFACT, run_setup  # bench/speed.py: this folder is on sys.path when a bench script runs


def step_times(make, dataset, compiled: bool) -> list[float]:
    """Train with ``make``'s set-up (compiled or not); return each step's seconds, in order."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import TrainerCallback

    from embedtune.models.loading import load_model

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            self.marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs) -> None:
            self.marks.append(time.perf_counter())

    model = load_model(MODEL)
    timer = StepTimes()
    with tempfile.TemporaryDirectory() as folder:
        args, loss, callbacks = make(model, Path(folder))
        args.eval_strategy, args.save_strategy = "no", "no"
        args.eval_on_start = args.load_best_model_at_end = False
        args.torch_compile = compiled  # set after the arguments' __post_init__, so the backend must be named too
        args.torch_compile_backend = "inductor" if compiled else None
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[timer, *callbacks]
        )
        trainer.train()
        if compiled:
            print("dynamo:", dict(torch._dynamo.utils.counters["stats"]), flush=True)
    return [end - begin for begin, end in zip(timer.marks[::2], timer.marks[1::2], strict=True)]


def main() -> None:
    """Measure both sides and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="Training steps per side (16).")
    parser.add_argument("--warmup", type=int, default=4, help="First steps left out of the median (4).")
    parser.add_argument("--precision", default="auto", help="train.precision of both sides (auto).")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"skipped: SciFact not found at {SCIFACT} (see the project README)")
    make, dataset, _ = run_setup(SCIFACT, [f"train.precision={args.precision}", f"train.max_steps={args.steps}"])
    figures: dict = {"steps": args.steps, "warmup": args.warmup, "precision": args.precision}
    for side, compiled in (("eager", False), ("compiled", True)):
        times = step_times(make, dataset, compiled)
        figures[side] = {
            "median_step_s": round(statistics.median(times[args.warmup :]), 3),
            "first_steps_s": [round(seconds, 1) for seconds in times[: args.warmup]],
            "all_steps_s": round(sum(times), 1),
        }
        print(side, figures[side], flush=True)
    figures["steady_speedup"] = round(figures["eager"]["median_step_s"] / figures["compiled"]["median_step_s"], 2)
    figures["wall_speedup"] = round(figures["eager"]["all_steps_s"] / figures["compiled"]["all_steps_s"], 2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
