"""Run the four recipes of docs/recipes.md end to end on real data and print their figures and wall times.

Each recipe runs exactly its documented commands (prepare / mine, then ``embedtune train --config
examples/<recipe>.yaml``) from the project root, into ``recipe-data/`` and a runs folder, and prints base vs
fine-tuned on the reported split with the paired significance test. ``feature-weights`` also trains the same head
with every weight config of :data:`WEIGHT_SWEEP` (the unweighted control included), picks the config by dev nDCG@10
and compares it with the unweighted run query by query on test. Needs ``../shared/datasets`` (SciFact, KorQuAD)::

    .venv/bin/python bench/recipes.py feature-weights korquad-lora graded-pairs docs-ict --runs-dir /tmp/recipe-runs

``--no-sweeps`` trains each shipped config once and prints its dev selection verdict and seen/unseen split (the
2026-12-04 rows of docs/recipes.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
PYTHON = sys.executable

WEIGHT_SWEEP = {
    "uniform": {"bm25": 1.0, "dense": 1.0, "combine": "max"},
    "bm25 x2": {"bm25": 2.0, "dense": 1.0, "combine": "max"},
    "dense x2": {"bm25": 1.0, "dense": 2.0, "combine": "max"},
    "both found x2.25": {"bm25": 1.5, "dense": 1.5, "combine": "product"},
    "bm25-only x0.5": {"bm25": 0.5, "dense": 1.0, "combine": "max"},
}
"""Weight configs tried by ``feature-weights`` (features: the retrievers that found each mined negative)."""

GRADED_RATES = ("5e-6", "2e-4", "1e-3")
"""LoRA learning rates tried by ``graded-pairs`` (5e-6: the original full fine-tuning set-up's rate)."""

RECIPES = {
    "feature-weights": [
        [
            "mine",
            "../shared/datasets/scifact",
            "recipe-data/scifact-mined.jsonl",
            "--retriever",
            "both",
            "--relative-margin",
            "0.05",
            "--features-from-sources",
        ],
    ],
    "korquad-lora": [
        ["prepare", "squad", "../shared/datasets/korquad-v1.0/KorQuAD_v1.0_dev.json", "recipe-data/korquad"],
    ],
    "graded-pairs": [
        ["mine", "../shared/datasets/scifact", "recipe-data/scifact-mined-dense.jsonl", "--relative-margin", "0.05"],
        ["prepare", "pairs", "recipe-data/scifact-mined-dense.jsonl", "recipe-data/scifact-pairs.jsonl"],
    ],
    "docs-ict": [
        ["prepare", "docs", "recipe-data/scifact-abstracts", "recipe-data/scifact-ict", "--method", "ict"],
    ],
}
"""The documented data commands of each recipe (``embedtune`` arguments), run when their output is missing."""

CONFIGS = {
    "feature-weights": "examples/frozen-head-feature-weights.yaml",
    "korquad-lora": "examples/korquad-lora.yaml",
    "graded-pairs": "examples/graded-pairs-curriculum-matryoshka.yaml",
    "docs-ict": "examples/docs-ict-head-isotropy.yaml",
}


def embedtune(*args: str) -> float:
    """Run ``python -m embedtune ARGS`` in the project root; return its wall time in seconds (exit on failure)."""
    started = time.time()
    print("$ embedtune " + " ".join(args), flush=True)
    subprocess.run([PYTHON, "-m", "embedtune", *args], cwd=ROOT, check=True)
    return time.time() - started


def prepare_data(recipe: str) -> float:
    """Run the recipe's documented data commands whose output is missing; return their seconds."""
    seconds = 0.0
    if recipe == "docs-ict":
        abstracts = ROOT / "recipe-data" / "scifact-abstracts"
        abstracts.mkdir(parents=True, exist_ok=True)
        if not (abstracts / "corpus.jsonl").exists():
            (abstracts / "corpus.jsonl").write_bytes((SHARED / "scifact" / "corpus.jsonl").read_bytes())
    (ROOT / "recipe-data").mkdir(exist_ok=True)
    for command in RECIPES[recipe]:
        output = [arg for arg in command if arg.startswith("recipe-data/")][-1]
        if not (ROOT / output).exists():
            seconds += embedtune(*command)
    return seconds


def train(config: str, runs_dir: Path, name: str, *settings: str) -> dict:
    """Train one run; return its metrics.json plus its folder and wall time."""
    overrides = [
        part for setting in (f"runs_dir={runs_dir}", f"name={name}", *settings) for part in ("--set", setting)
    ]
    seconds = embedtune("-q", "train", "--config", config, *overrides)
    (folder,) = [path for path in runs_dir.iterdir() if path.name.endswith(name)]
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    return {"folder": folder, "seconds": seconds, "metrics": metrics}


def summary(label: str, run: dict) -> str:
    """One line: base -> fine-tuned on the reported split, p, dev best, extra data sets, wall time."""
    metrics = run["metrics"]
    report = metrics["report"]
    significance = metrics.get("significance") or {}
    extra = "".join(
        f"; {item['dataset']} ({item['split']}) {item['base']['ndcg@10']:.4f} -> {item['fine_tuned']['ndcg@10']:.4f}"
        for item in metrics.get("extra_reports") or []
    )
    dims = {key: value for key, value in report["fine_tuned"].items() if key.startswith("ndcg@10@")}
    base_dims = {key: report["base"][key] for key in dims}
    per_dim = f"; per dim base {base_dims} tuned {dims}" if dims else ""
    return (
        f"{label}: {report['split']} nDCG@10 {report['base']['ndcg@10']:.4f} -> {report['fine_tuned']['ndcg@10']:.4f}"
        f" (p {significance.get('p_permutation', float('nan')):.4f}); dev best {best_dev(metrics):.4f}{extra}{per_dim}"
        f"; wall {run['seconds']:.0f} s (train {metrics.get('train_time_s', 0):.0f} s)"
    )


def verdicts(metrics: dict) -> str:
    """Return the run's dev selection verdict and its seen/unseen split, one indented line each."""
    lines = [f"  selection: {metrics['selection']['verdict']}"]
    record = metrics.get("seen_unseen") or {}
    lines.append(f"  seen/unseen: {record.get('verdict', '-')}")
    for group in ("seen", "unseen"):
        sig = record.get(group)
        if sig:
            lines.append(
                f"    {group}: n {sig['queries']} base {sig['mean_a']:.4f} tuned {sig['mean_b']:.4f} "
                f"Δ {sig['mean_diff']:+.4f} (95 % CI {sig['ci_low']:+.4f} … {sig['ci_high']:+.4f}) "
                f"p {sig['p_permutation']:.4f}"
            )
    return "\n".join(lines)


def best_dev(metrics: dict) -> float:
    """Return the best fine-tuned checkpoint's dev nDCG@10."""
    return float(metrics["selection"]["best_dev"])


def judged(split: str) -> dict[str, set[str]]:
    """SciFact qrels of a split: query id -> ids of its relevant abstracts."""
    import csv

    rows = list(csv.reader((SHARED / "scifact" / "qrels" / f"{split}.tsv").open(), delimiter="\t"))[1:]
    qrels: dict[str, set[str]] = {}
    for query, doc, score in rows:
        if int(score) > 0:
            qrels.setdefault(query, set()).add(doc)
    return qrels


def seen_unseen(base: dict[str, float], tuned: dict[str, float]) -> str:
    """Split SciFact's test Δ nDCG@10 by whether a query's relevant abstract is also a training positive.

    SciFact's claims cite a shared pool of abstracts: most test queries have a relevant abstract that some training
    query also has. A model can gain there by learning which abstracts get cited at all; the queries whose relevant
    abstracts never appear in train show the gain that does not rest on that.
    """
    train_docs = set().union(*judged("train").values())
    groups: dict[str, list[float]] = {"seen": [], "unseen": []}
    for query, docs in judged("test").items():
        groups["seen" if docs & train_docs else "unseen"].append(tuned[query] - base[query])
    return "; ".join(
        f"{name} ({len(deltas)} queries): mean Δ nDCG@10 {sum(deltas) / len(deltas):+.4f}"
        for name, deltas in groups.items()
    )


def seen_positive_breakdown(folder: Path) -> str:
    """:func:`seen_unseen` of a SciFact run folder's ``per_query.json``."""
    per_query = json.loads((folder / "per_query.json").read_text(encoding="utf-8"))
    base, tuned = ({q: v["ndcg@10"] for q, v in per_query[role].items()} for role in ("base", "fine_tuned"))
    return seen_unseen(base, tuned)


def scifact_eval(folder: Path, out: Path) -> str:
    """Run the documented ``embedtune eval`` of a run on SciFact test; return its significance line and the split."""
    embedtune(
        "eval",
        "--model",
        str(folder),
        "--data",
        "../shared/datasets/scifact",
        "--baseline",
        "all-MiniLM-L6-v2",
        "--out",
        str(out),
    )
    rows = [json.loads(line) for line in (out / "per_query.jsonl").read_text(encoding="utf-8").splitlines()]
    base = {row["query_id"]: row["ndcg@10"] for row in rows if row["role"] == "baseline"}
    tuned = {row["query_id"]: row["ndcg@10"] for row in rows if row["role"] != "baseline"}
    return seen_unseen(base, tuned)


def feature_weight_sweep(runs_dir: Path) -> None:
    """Train the head with each weight config; compare the dev-chosen one with the unweighted control on test."""
    from embedtune.evaluation.significance import compare_per_query

    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, spec in WEIGHT_SWEEP.items():
            path = Path(folder) / f"{label.replace(' ', '_')}.json"
            features = {key: value for key, value in spec.items() if key != "combine"}
            path.write_text(json.dumps({"features": features, "default": 1.0, "combine": spec["combine"]}))
            name = "fw-" + label.replace(" ", "-").replace(".", "")
            runs[label] = train(CONFIGS["feature-weights"], runs_dir, name, f"data.feature_weights={path}")
            print(summary(label, runs[label]), flush=True)
            print("  " + seen_positive_breakdown(runs[label]["folder"]), flush=True)
    chosen = max((label for label in runs if label != "uniform"), key=lambda label: best_dev(runs[label]["metrics"]))
    print(
        f"chosen on dev: {chosen} ({best_dev(runs[chosen]['metrics']):.4f} vs uniform "
        f"{best_dev(runs['uniform']['metrics']):.4f})"
    )
    per_query = {
        label: json.loads((runs[label]["folder"] / "per_query.json").read_text())["fine_tuned"]
        for label in ("uniform", chosen)
    }
    scores = {label: {qid: values["ndcg@10"] for qid, values in rows.items()} for label, rows in per_query.items()}
    comparison = compare_per_query(scores["uniform"], scores[chosen], labels=("uniform", chosen))
    print(comparison.verdict)


def graded_pairs_rates(runs_dir: Path) -> None:
    """Train recipe 3 at each rate of :data:`GRADED_RATES`; report the one with the best dev nDCG@10."""
    runs = {}
    for rate in GRADED_RATES:
        runs[rate] = train(CONFIGS["graded-pairs"], runs_dir, f"graded-pairs-lr{rate}", f"train.learning_rate={rate}")
        print(summary(f"lr {rate}", runs[rate]), flush=True)
        print("  pair diagnostics: " + json.dumps(runs[rate]["metrics"].get("pair_diagnostics")), flush=True)
    chosen = max(runs, key=lambda rate: best_dev(runs[rate]["metrics"]))
    print(f"chosen on dev: lr {chosen} ({best_dev(runs[chosen]['metrics']):.4f})")


def main() -> None:
    """Run the recipes named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+", choices=sorted(CONFIGS))
    parser.add_argument("--runs-dir", type=Path, default=Path(tempfile.gettempdir()) / "recipe-runs")
    parser.add_argument(
        "--no-sweeps", action="store_true", help="Train each shipped config once (no weight or rate sweep)."
    )
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the recipes need ../shared/datasets (SciFact, KorQuAD).")
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    for recipe in args.recipes:
        seconds = prepare_data(recipe)
        print(f"{recipe}: data commands {seconds:.0f} s", flush=True)
        if recipe == "feature-weights" and not args.no_sweeps:
            feature_weight_sweep(args.runs_dir)
        elif recipe == "graded-pairs" and not args.no_sweeps:
            graded_pairs_rates(args.runs_dir)
        else:
            run = train(CONFIGS[recipe], args.runs_dir, recipe)
            print(summary(recipe, run), flush=True)
            print(verdicts(run["metrics"]), flush=True)
            if recipe == "docs-ict" and not args.no_sweeps:
                print("  SciFact test " + scifact_eval(run["folder"], args.runs_dir / "docs-ict-scifact-eval"))


if __name__ == "__main__":
    main()
