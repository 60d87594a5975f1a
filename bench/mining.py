"""Hard-negative mining benchmark on SciFact with all-MiniLM-L6-v2: mining cost, then what mined negatives buy.

(a) ``mine``: ``embedtune mine`` over SciFact's train split (809 queries against 5,183 abstracts) with the dense
    retriever, BM25 and both (:data:`MINING_OPTIONS`); each in its own subprocess, so wall time and peak resident
    memory are its own (dense encoding is read from the embedding cache when it is warm).
(b) ``train``: the full ``embedtune train`` pipeline (dev carved from train selects the checkpoint; test is only
    reported), every recipe with the same seed, batch size, epochs and training rows, one after the other:

    - in-batch negatives only (the dense-mined file with ``data.max_hard_negatives=0``: the same rows, no negatives)
    - + dense-mined hard negatives
    - + dense+BM25-mined hard negatives
    - + dense-mined hard negatives with a curriculum (difficulty terciles, easy -> hard; the same number of steps:
      ``curriculum.epochs_per_phase`` = ``train.epochs``, each phase holding a third of the rows)

    Test nDCG@10 (base and fine-tuned), the paired significance of each against the base model, train time.

    .venv/bin/python bench/mining.py                       # both parts, rows appended to docs/benchmarks.md
    .venv/bin/python bench/mining.py --part mine --no-record
    .venv/bin/python bench/mining.py --part train --negatives 1 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
RETRIEVERS = ("dense", "bm25", "both")
# Ranks 10-100 and no candidate above 95 % of the query's best positive score (NV-Retriever's TopK-PercPos,
# arXiv:2407.15831): without a margin, 768 of SciFact's 4,045 dense-mined negatives score at or above the positive,
# which in a corpus with sparse judgements are mostly unjudged relevant abstracts.
MINING_OPTIONS = ("--range-min", "10", "--range-max", "100", "--relative-margin", "0.05")


def mine(retriever: str, out: Path) -> dict:
    """Run ``embedtune mine`` in a subprocess; return its wall time, peak memory and negatives per query."""
    command = [
        sys.executable, "-m", "embedtune", "mine", str(SCIFACT), str(out),
        "--retriever", retriever, "--max-seq-length", "256", "--overwrite", *MINING_OPTIONS,
    ]  # fmt: skip
    started = time.time()
    finished = subprocess.run(
        ["/usr/bin/time", "-f", "peak_rss_kb=%M", *command], check=True, capture_output=True, text=True
    )
    wall = time.time() - started
    peak = re.search(r"peak_rss_kb=(\d+)", finished.stderr)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    negatives = [len(record.get("neg", [])) for record in records]
    return {
        "retriever": retriever,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(int(peak.group(1)) / 1024, 1) if peak else None,
        "queries": len(records),
        "negatives_per_query": round(sum(negatives) / max(len(records), 1), 2),
        "queries_without_negatives": sum(1 for count in negatives if count == 0),
        "summary": finished.stdout.strip().splitlines()[-6:],
    }


def train(label: str, overrides: list[str], runs_dir: Path) -> dict:
    """Run ``embedtune train`` in a subprocess with ``overrides``; return the figures of its metrics.json."""
    command = [sys.executable, "-m", "embedtune", "-q", "train", "--set", f"data.path={SCIFACT}"]
    for override in [f"runs_dir={runs_dir}", f"name={re.sub(r'[^a-z0-9]+', '-', label.lower())}", *overrides]:
        command += ["--set", override]
    subprocess.run(command, check=True)
    folder = max(runs_dir.iterdir(), key=lambda path: path.stat().st_mtime)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["report"]["role"] == "test", "the benchmark reports the held-out test split only"
    significance = metrics.get("significance") or {}
    return {
        "label": label,
        "settings": " ".join(overrides),
        "base": metrics["report"]["base"]["ndcg@10"],
        "fine_tuned": metrics["report"]["fine_tuned"]["ndcg@10"],
        "recall@100": metrics["report"]["fine_tuned"].get("recall@100"),
        "p_value": significance.get("p_permutation"),
        "selected_step": metrics["selection"].get("step"),
        "train_time_s": metrics["train_time_s"],
        "peak_memory_mb": metrics["peak_memory_mb"],
        "curriculum": metrics.get("curriculum"),
        "run_folder": str(folder),
    }


def run_training_part(mined: dict[str, Path], negatives: int, epochs: float, runs_dir: Path) -> list[dict]:
    """Train every recipe with the same seed, epochs and rows; return one result per recipe."""
    common = [f"train.epochs={epochs}", "model.max_seq_length=256"]
    recipes = [
        ("in-batch negatives only", [f"data.train_file={mined['dense']}", "data.max_hard_negatives=0"]),
        ("+ dense-mined negatives", [f"data.train_file={mined['dense']}", f"data.max_hard_negatives={negatives}"]),
        ("+ dense+BM25-mined negatives", [f"data.train_file={mined['both']}", f"data.max_hard_negatives={negatives}"]),
        (
            "+ dense-mined, curriculum easy->hard",
            [
                f"data.train_file={mined['dense']}",
                f"data.max_hard_negatives={negatives}",
                "curriculum.enabled=true",
                "curriculum.source=difficulty",
                f"curriculum.epochs_per_phase={epochs}",
            ],
        ),
    ]
    results = []
    for label, overrides in recipes:
        result = train(label, [*common, *overrides], runs_dir)
        if results:
            result["vs_in_batch"] = compare_runs(results[0]["run_folder"], result["run_folder"])
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def compare_runs(reference: str, candidate: str) -> dict:
    """Paired comparison of two runs' fine-tuned test nDCG@10, query by query (randomisation test, bootstrap CI)."""
    from embedtune.evaluation.significance import compare_per_query

    def ndcg(folder: str) -> dict[str, float]:
        record = json.loads((Path(folder) / "per_query.json").read_text(encoding="utf-8"))
        return {qid: scores["ndcg@10"] for qid, scores in record["fine_tuned"].items()}

    comparison = compare_per_query(ndcg(reference), ndcg(candidate), labels=("in-batch", "candidate"))
    return {"mean_diff": comparison.mean_diff, "p_permutation": comparison.p_permutation}


def format_tables(mining: list[dict] | None, training: list[dict] | None) -> str:
    """Markdown tables of both parts."""
    lines = []
    if mining:
        lines += [
            "| retriever | wall (s) | peak RSS (MiB) | negatives / query | queries without negatives |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['retriever']} | {row['wall_s']:.0f} | {row['peak_rss_mb']:.0f} | {row['negatives_per_query']} "
            f"| {row['queries_without_negatives']} |"
            for row in mining
        ]
        lines.append("")
    if training:
        lines += [
            "| recipe | test nDCG@10 base → fine-tuned | Δ vs base (p) | Δ vs in-batch (p) | train (s) |",
            "|---|---|---|---|---|",
        ]
        for row in training:
            p_value = "-" if row["p_value"] is None else f"{row['p_value']:.4f}"
            versus = row.get("vs_in_batch")
            paired = f"{versus['mean_diff']:+.4f} ({versus['p_permutation']:.4f})" if versus else "-"
            lines.append(
                f"| {row['label']} | {row['base']:.4f} → {row['fine_tuned']:.4f} | "
                f"{row['fine_tuned'] - row['base']:+.4f} ({p_value}) | {paired} | {row['train_time_s']:.0f} |"
            )
    return "\n".join(lines)


def append_markdown(text: str, command: str) -> None:
    """Append the tables under a dated heading to docs/benchmarks.md."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    heading = f"\n## Hard-negative mining and curriculum ({date.today()}, commit {commit.stdout.strip()})\n\n"
    with BENCHMARKS_MD.open("a", encoding="utf-8") as handle:
        handle.write(heading + f"`{command}`\n\n" + text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["mine", "train"], help="Run one part only (train mines dense and both).")
    parser.add_argument("--negatives", type=int, default=1, help="data.max_hard_negatives of the mined recipes.")
    parser.add_argument("--epochs", type=float, default=4.0, help="train.epochs of every recipe.")
    parser.add_argument("--work-dir", type=Path, help="Where mined files and runs go (default: a temporary folder).")
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"SciFact not found at {SCIFACT}: this benchmark needs ../shared/datasets/scifact.")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="embedtune-mining-"))
    work.mkdir(parents=True, exist_ok=True)
    mined = {retriever: work / f"scifact-train-{retriever}.jsonl" for retriever in RETRIEVERS}
    mining = None
    if args.part in (None, "mine"):
        mining = []
        for retriever in RETRIEVERS:
            mining.append(mine(retriever, mined[retriever]))
            print(json.dumps(mining[-1]), flush=True)
    elif not all(mined[name].is_file() for name in ("dense", "both")):
        for retriever in ("dense", "both"):
            mine(retriever, mined[retriever])
    training = None
    if args.part in (None, "train"):
        training = run_training_part(mined, args.negatives, args.epochs, work / "runs")
    text = format_tables(mining, training)
    print(text)
    if not args.no_record:
        append_markdown(text, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
