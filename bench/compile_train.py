"""torch.compile for the training step: embedtune's SciFact set-up trained eagerly and compiled, side by side.

The set-up is the one ``embedtune train`` builds for SciFact's default run (row labels, false-negative table,
symmetric InfoNCE, callbacks) with all-MiniLM-L6-v2, batch 32, at ``--precision`` (auto: bf16 autocast where the CPU
or GPU has it natively). The compiled side sets transformers' ``torch_compile`` (inductor; sentence-transformers puts
the compiled model into the loss), so the shapes that vary (query lengths) are handled by inductor's automatic
dynamic shapes. Printed: each side's median step time over the steps after the first ``--warmup``, the wall time of
all steps (compiling included), the ratios, and how many graphs dynamo compiled (0 would mean nothing was compiled);
nothing is recorded::

    .venv/bin/python bench/compile_train.py --steps 16

``--whole-run`` times the same steps inside a whole ``embedtune train`` run instead (the pipeline's model loading,
mode set-up, dev evaluator with its step-0 evaluation, checkpointing), stopped after ``--steps`` steps, in a scratch
runs folder; its base-model evaluations read the embedding cache (``EMBEDTUNE_CACHE_DIR``), so warm it first::

    .venv/bin/python bench/compile_train.py --steps 16 --whole-run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from speed import MODEL, SCIFACT, run_setup  # bench/speed.py: this folder is on sys.path when a bench script runs

SIDES = (("eager", False), ("compiled", True))
"""Each side's name and whether it compiles, in the order they run."""


class EnoughSteps(Exception):
    """Raised by the step timer of a whole run once it has timed the steps asked for."""


def step_timer(stop_after: int | None = None):
    """Return a trainer callback that records when each step begins and ends (``marks``).

    With ``stop_after``, it raises :class:`EnoughSteps` once that many steps have ended.
    """
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            self.marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs) -> None:
            self.marks.append(time.perf_counter())
            if stop_after is not None and len(self.marks) >= 2 * stop_after:
                raise EnoughSteps

    return StepTimes()


def durations(marks: list[float]) -> list[float]:
    """Seconds of each step from its begin and end marks."""
    return [end - begin for begin, end in zip(marks[::2], marks[1::2], strict=True)]


def whole_run_step_times(overrides: list[str], compiled: bool, steps: int, data: Path = SCIFACT) -> list[float]:
    """Time the first ``steps`` steps of a whole ``embedtune train`` run on ``data`` (compiled or not).

    The run goes to a scratch runs folder and is stopped after ``steps`` steps (recorded there as failed).

    Args:
        overrides: ``--set`` style settings of the run (``train.precision=...``, ``model.name_or_path=...``).
        compiled: Set transformers' ``torch_compile`` (inductor) on the run's training arguments.
        steps: Steps to time.
        data: The BEIR folder the run trains on.

    Returns:
        Each step's seconds, in order (``steps`` of them).
    """
    from embedtune.config import build_config
    from embedtune.training import fine_tune
    from embedtune.training.pipeline import RunFailedError, run_training
    from embedtune.training.trainer_setup import extra_callbacks

    build_arguments = fine_tune.training_arguments  # embedtune has no compile setting (docs/benchmarks.md says why)

    def arguments(*args, **kwargs):
        training_args = build_arguments(*args, **kwargs)
        training_args.torch_compile = compiled
        training_args.torch_compile_backend = "inductor" if compiled else None
        return training_args

    timer = step_timer(stop_after=steps)
    with tempfile.TemporaryDirectory() as runs, extra_callbacks(timer):
        config = build_config(overrides=[f"data.path={data}", f"runs_dir={runs}", *overrides])
        with mock.patch.object(fine_tune, "training_arguments", arguments):
            try:
                run_training(config)
            except RunFailedError as error:
                if not isinstance(error.__cause__, EnoughSteps):
                    raise
    report_graphs(compiled)
    return durations(timer.marks)


def step_times(make, dataset, compiled: bool) -> list[float]:
    """Train with ``make``'s set-up (compiled or not); return each step's seconds, in order."""
    from sentence_transformers import SentenceTransformerTrainer

    from embedtune.models.loading import load_model

    model = load_model(MODEL)
    timer = step_timer()
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
    report_graphs(compiled)
    return durations(timer.marks)


def report_graphs(compiled: bool) -> None:
    """Print dynamo's counters after a compiled side (``unique_graphs`` 0 would mean nothing was compiled)."""
    import torch

    if compiled:
        print("dynamo:", dict(torch._dynamo.utils.counters["stats"]), flush=True)


def compare_whole_runs(overrides: list[str], steps: int, warmup: int, data: Path = SCIFACT) -> dict:
    """Time ``steps`` steps of a whole run on ``data`` eagerly, then compiled (:func:`whole_run_step_times`).

    Returns:
        ``{"eager": side, "compiled": side, "steady_speedup": x, "wall_speedup": x}``, each side
        ``{"median_step_s", "first_steps_s", "all_steps_s"}``; the median leaves out the first ``warmup`` steps.
    """
    figures = {
        side: summary(whole_run_step_times(overrides, compiled, steps, data), warmup) for side, compiled in SIDES
    }
    return {**figures, **speedups(figures)}


def summary(times: list[float], warmup: int) -> dict:
    """One side's figures from its step times: the median after ``warmup`` steps, the first steps, the total."""
    return {
        "median_step_s": round(statistics.median(times[warmup:]), 3),
        "first_steps_s": [round(seconds, 1) for seconds in times[:warmup]],
        "all_steps_s": round(sum(times), 1),
    }


def speedups(figures: dict) -> dict:
    """Eager over compiled: after the warm-up steps (steady) and over all steps (wall, compiling included)."""
    eager, compiled = figures["eager"], figures["compiled"]
    return {
        "steady_speedup": round(eager["median_step_s"] / compiled["median_step_s"], 2),
        "wall_speedup": round(eager["all_steps_s"] / compiled["all_steps_s"], 2),
    }


def main() -> None:
    """Measure both sides and print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="Training steps per side (16).")
    parser.add_argument("--warmup", type=int, default=4, help="First steps left out of the median (4).")
    parser.add_argument("--precision", default="auto", help="train.precision of both sides (auto).")
    parser.add_argument("--whole-run", action="store_true", help="Time the steps inside whole embedtune runs.")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"skipped: SciFact not found at {SCIFACT} (see the project README)")
    overrides = [f"train.precision={args.precision}"]
    figures: dict = {"steps": args.steps, "warmup": args.warmup, "precision": args.precision}
    figures["set_up"] = "whole run" if args.whole_run else "trainer"
    if args.whole_run:
        figures.update(compare_whole_runs(overrides, args.steps, args.warmup))
    else:
        make, dataset, _ = run_setup(SCIFACT, [*overrides, f"train.max_steps={args.steps}"])
        sides = {side: summary(step_times(make, dataset, compiled), args.warmup) for side, compiled in SIDES}
        figures.update({**sides, **speedups(sides)})
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
