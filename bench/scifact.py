"""SciFact benchmark: embedtune's default recipe vs sentence-transformers' default recipe, both vs the base model.

Trains all-MiniLM-L6-v2 on the SciFact train queries and reports nDCG@10 / MRR@10 / Recall@100 on the test split
(whole corpus), wall time and peak memory, then appends a row to docs/benchmarks.md. Each recipe runs in its own
subprocess so that its peak memory is its own; this process prints both side by side.

    .venv/bin/python bench/scifact.py                 # both recipes
    .venv/bin/python bench/scifact.py --only embedtune --set train.epochs=2

The reference recipe is sentence-transformers' documented default: MultipleNegativesRankingLoss, batch 32,
lr 2e-5, warm-up 10 %, 3 epochs over all 919 train (query, abstract) pairs, no-duplicates sampler.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
METRICS = ("ndcg@10", "mrr@10", "recall@100")


def run_embedtune(overrides: list[str], runs_dir: Path) -> dict:
    from embedtune.config import build_config
    from embedtune.training.pipeline import run_training

    config = build_config(overrides=[f"data.path={SCIFACT}", "name=scifact-bench", f"runs_dir={runs_dir}", *overrides])
    result = run_training(config)
    metrics = result.metrics.to_dict()
    assert metrics["report"]["role"] == "test", "the benchmark reports the held-out test split only"
    return {
        "base": metrics["report"]["base"],
        "fine_tuned": metrics["report"]["fine_tuned"],
        "selection": metrics["selection"],
        "train_time_s": metrics["train_time_s"],
        "wall_time_s": metrics["wall_time_s"],
        "peak_memory_mb": metrics["peak_memory_mb"],
        "run_folder": str(result.folder),
        "dev_history": metrics["dev_history"],
        "settings": " ".join(overrides) or "defaults",
    }


def run_reference() -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from embedtune.data.beir import load_beir
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
    from embedtune.models.loading import load_model
    from embedtune.training.run_records import peak_memory_mb

    started = time.time()
    beir = load_beir(SCIFACT)
    pairs = [(beir.queries[q], beir.corpus[d]) for q, docs in beir.qrels["train"].items() for d in docs]
    dataset = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [d for _, d in pairs]})
    model = load_model("all-MiniLM-L6-v2")
    with tempfile.TemporaryDirectory() as output_dir:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir,
            num_train_epochs=3,
            per_device_train_batch_size=32,
            learning_rate=2e-5,
            warmup_ratio=0.1,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            report_to="none",
            seed=42,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model)
        )
        train_started = time.time()
        trainer.train()
        train_time = time.time() - train_started
    evaluator = RetrievalEvaluator(beir.corpus, beir.queries, beir.qrels["test"])
    fine_tuned = evaluator(model)
    return {
        "fine_tuned": fine_tuned,
        "train_time_s": round(train_time, 1),
        "wall_time_s": round(time.time() - started, 1),
        "peak_memory_mb": peak_memory_mb(),
        "settings": f"MNRL, batch 32, lr 2e-5, warmup 0.1, 3 epochs, {len(pairs)} pairs",
    }


def run_in_subprocess(part: str, overrides: list[str], runs_dir: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        output = Path(handle.name)
    command = [sys.executable, __file__, "--part", part, "--output", str(output), "--runs-dir", str(runs_dir)]
    command += [arg for override in overrides for arg in ("--set", override)]
    subprocess.run(command, check=True)
    return json.loads(output.read_text())


def format_table(results: dict[str, dict]) -> str:
    base = next(result["base"] for result in results.values() if "base" in result)
    header = f"{'model':<26}" + "".join(f"{m:>12}" for m in METRICS) + f"{'train s':>10}{'wall s':>9}{'peak MiB':>10}"
    lines = [header, f"{'base (zero-shot)':<26}" + "".join(f"{base[m]:>12.4f}" for m in METRICS)]
    for label, result in results.items():
        figures = "".join(f"{result['fine_tuned'][m]:>12.4f}" for m in METRICS)
        timing = f"{result['train_time_s']:>10.0f}{result['wall_time_s']:>9.0f}{result['peak_memory_mb']:>10.0f}"
        lines.append(f"{label:<26}{figures}{timing}")
    return "\n".join(lines)


def append_markdown(results: dict[str, dict]) -> None:
    from embedtune.runs.folder import git_commit

    base = next(result["base"] for result in results.values() if "base" in result)
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(
            "# Benchmarks\n\nRows are added by the scripts under `bench/`; figures are test-split metrics "
            "over the whole corpus.\n\n"
            "| date | commit | bench | recipe | settings | nDCG@10 | MRR@10 | Recall@100 | train s | wall s | "
            "peak MiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        )
    full_commit = git_commit(ROOT) or "unknown"
    commit = full_commit[:12] + ("+dirty" if full_commit.endswith("+dirty") else "")
    rows = [
        f"| {date.today()} | {commit} | scifact | base all-MiniLM-L6-v2 | zero-shot | "
        + " | ".join(f"{base[m]:.4f}" for m in METRICS)
        + " | | | |"
    ]
    for label, result in results.items():
        figures = " | ".join(f"{result['fine_tuned'][m]:.4f}" for m in METRICS)
        rows.append(
            f"| {date.today()} | {commit} | scifact | {label} | {result['settings']} | {figures} | "
            f"{result['train_time_s']:.0f} | {result['wall_time_s']:.0f} | {result['peak_memory_mb']:.0f} |"
        )
    insert_rows(BENCHMARKS_MD, rows)


def insert_rows(path: Path, rows: list[str]) -> None:
    """Add ``rows`` at the end of the file's first table (the sections below it stay below)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
    path.write_text("\n".join(lines[:end] + rows + lines[end:]) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["embedtune", "reference"], help="Run one recipe only.")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="embedtune config override.")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs", help="Where embedtune's run folder goes.")
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"SciFact not found at {SCIFACT}: this benchmark needs ../shared/datasets/scifact.")
    if args.part:
        result = run_embedtune(args.set, args.runs_dir) if args.part == "embedtune" else run_reference()
        args.output.write_text(json.dumps(result))
        return
    results = {}
    if args.only in (None, "embedtune"):
        results["embedtune (default)"] = run_in_subprocess("embedtune", args.set, args.runs_dir)
        print(json.dumps(results["embedtune (default)"]["dev_history"], indent=1))
        print(results["embedtune (default)"]["selection"]["verdict"])
    if args.only in (None, "reference"):
        results["sentence-transformers ref"] = run_in_subprocess("reference", [], args.runs_dir)
    if "base" not in next(iter(results.values())):
        from embedtune.data.beir import load_beir
        from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
        from embedtune.models.loading import load_model

        beir = load_beir(SCIFACT)
        results["sentence-transformers ref"]["base"] = RetrievalEvaluator(
            beir.corpus, beir.queries, beir.qrels["test"]
        )(load_model("all-MiniLM-L6-v2"))
    print(format_table(results))
    if not args.no_record:
        append_markdown(results)


if __name__ == "__main__":
    main()
