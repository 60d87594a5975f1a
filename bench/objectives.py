"""Training objectives benchmark: GradCache memory, and SciFact test nDCG@10 per objective, side by side.

(a) ``memory``: peak memory and step time of one GradCache InfoNCE step at batch 256 (mini-batches of 16) vs one
    plain step at batch 16, all-MiniLM-L6-v2 on real SciFact (query, abstract) pairs; each in its own subprocess so
    that its peak resident memory is its own (target: cached batch 256 <= 1.3x the uncached batch 16).
(b) ``quality``: the same data, seed, batch size and steps for every recipe, in one process: MNRL,
    symmetric InfoNCE, + false-negative masking (qrels/text and a frozen-base guide), + Matryoshka, + isotropy. Every
    model is trained for the same fixed number of steps (no checkpoint selection, no dev evaluation) and evaluated
    once on SciFact test over the whole corpus, with nDCG@10 at 384/256/128/64 dimensions (truncate + renormalise).

    .venv/bin/python bench/objectives.py                  # both parts, rows appended to docs/benchmarks.md
    .venv/bin/python bench/objectives.py --part memory --no-record
    .venv/bin/python bench/objectives.py --part quality --epochs 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
DIMS = [384, 256, 128, 64]
RECIPES = {  # label -> loss settings; each adds to the one before it, after MNRL
    "MNRL (sentence-transformers)": {"name": "mnrl"},
    "InfoNCE symmetric": {"name": "infonce", "mask_false_negatives": False},
    "+ false-negative masking": {"name": "infonce", "mask_false_negatives": True, "guide": True},
    "+ Matryoshka": {"name": "infonce", "mask_false_negatives": True, "guide": True, "matryoshka": True},
    "+ isotropy 0.1": {
        "name": "infonce",
        "mask_false_negatives": True,
        "guide": True,
        "matryoshka": True,
        "isotropy_weight": 0.1,
    },
}


def rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_step(batch_size: int, mini_batch_size: int | None, steps: int = 2) -> dict:
    """Run ``steps`` forward+backward passes of InfoNCE on real SciFact pairs; report peak memory above the load."""
    import torch

    from embedtune.data.beir import load_beir
    from embedtune.losses.cached_info_nce import CachedInfoNCELoss
    from embedtune.losses.info_nce import InfoNCELoss
    from embedtune.models.loading import load_model

    torch.manual_seed(0)
    beir = load_beir(SCIFACT)
    pairs = [(beir.queries[q], beir.corpus[d]) for q, docs in beir.qrels["train"].items() for d in docs]
    model = load_model("all-MiniLM-L6-v2")
    model.train()
    loss_fn = (
        CachedInfoNCELoss(model, mini_batch_size=mini_batch_size, symmetric=True)
        if mini_batch_size
        else InfoNCELoss(model, symmetric=True)
    )
    loaded = rss_mb()
    times = []
    for step in range(steps):
        batch = pairs[step * batch_size : (step + 1) * batch_size]
        features = [model.tokenize([q for q, _ in batch]), model.tokenize([d for _, d in batch])]
        started = time.perf_counter()
        loss = loss_fn(features, None)
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return {
        "batch_size": batch_size,
        "mini_batch_size": mini_batch_size,
        "peak_above_load_mb": round(rss_mb() - loaded, 1),
        "peak_mb": round(rss_mb(), 1),
        "step_s": round(min(times), 2),
        "max_seq_length": model.max_seq_length,
    }


def run_memory_part() -> dict:
    """Run the uncached batch-16 and the cached batch-256 step, each in a fresh subprocess."""
    results = {}
    for label, args in (("uncached batch 16", ["16", "0"]), ("cached batch 256 (mini 16)", ["256", "16"])):
        output = (
            subprocess.run(
                [sys.executable, __file__, "--part", "memory-step", *args], check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        results[label] = json.loads(output)
        print(label, results[label], flush=True)
    uncached, cached = results.values()
    ratio = cached["peak_above_load_mb"] / uncached["peak_above_load_mb"]
    print(f"peak memory above load: cached 256 / uncached 16 = {ratio:.2f}x (target <= 1.3x)")
    return {"rows": results, "ratio": round(ratio, 2)}


def run_quality_part(epochs: float) -> dict:
    """Train each recipe with the same seed and steps, evaluate on SciFact test; return label -> scores."""
    import torch

    from embedtune.config import build_config
    from embedtune.data.prepare import prepare_data
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
    from embedtune.losses import LossContext, build_loss
    from embedtune.models.loading import load_model
    from embedtune.training.dataset import build_train_dataset

    torch.set_num_threads(2)
    config = build_config(overrides=[f"data.path={SCIFACT}"])
    data = prepare_data(config.data)
    evaluator = RetrievalEvaluator(data.report.corpus, data.report.queries, data.report.qrels, truncate_dims=DIMS)
    results = {"base (zero-shot)": {"scores": evaluator(load_model("all-MiniLM-L6-v2")), "train_s": 0.0}}
    print("base", results["base (zero-shot)"]["scores"], flush=True)
    for label, loss_settings in RECIPES.items():
        loss_config = build_config(
            overrides=[f"data.path={SCIFACT}", *(f"loss.{key}={value}" for key, value in loss_settings.items())]
        ).loss
        model = load_model("all-MiniLM-L6-v2")
        built = build_train_dataset(data.train_examples, 0, pad_negatives=loss_config.name == "infonce")
        loss = build_loss(model, loss_config, LossContext(false_negatives=built.false_negatives))
        started = time.time()
        _train(model, built.dataset, loss, epochs)
        train_s = time.time() - started
        components = getattr(getattr(loss, "loss", loss), "components", None)
        results[label] = {
            "scores": evaluator(model),
            "train_s": round(train_s, 1),
            "settings": ", ".join(f"{k}={v}" for k, v in loss_settings.items()),
            "components": components.pop_means() if components is not None else {},
        }
        print(label, results[label], flush=True)
    return results


def _train(model, dataset, loss, epochs: float) -> None:
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    with tempfile.TemporaryDirectory() as output_dir:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir,
            num_train_epochs=epochs,
            per_device_train_batch_size=32,
            learning_rate=2e-5,
            warmup_ratio=0.1,
            weight_decay=0.01,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            report_to="none",
            seed=42,
            data_seed=42,
            disable_tqdm=True,
        )
        SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()


def format_quality(results: dict) -> str:
    keys = ["ndcg@10", "mrr@10", "recall@100"] + [f"ndcg@10@{d}d" for d in DIMS[1:]]
    lines = [f"{'recipe':<30}" + "".join(f"{k:>14}" for k in keys) + f"{'train s':>9}"]
    for label, result in results.items():
        scores = result["scores"]
        lines.append(f"{label:<30}" + "".join(f"{scores[k]:>14.4f}" for k in keys) + f"{result['train_s']:>9.0f}")
    return "\n".join(lines)


def append_markdown(memory: dict | None, quality: dict | None, epochs: float) -> None:
    from embedtune.runs.folder import git_commit

    full_commit = git_commit(ROOT) or "unknown"
    commit = full_commit[:12] + ("+dirty" if full_commit.endswith("+dirty") else "")
    rows = ["", f"### bench/objectives.py ({date.today()}, commit {commit})", ""]
    if memory is not None:
        rows += ["| step (all-MiniLM-L6-v2, SciFact pairs) | peak MiB above load | step s |", "|---|---|---|"]
        rows += [f"| {k} | {v['peak_above_load_mb']:.0f} | {v['step_s']:.2f} |" for k, v in memory["rows"].items()]
        rows += ["", f"Cached batch 256 / uncached batch 16 peak memory: {memory['ratio']:.2f}x.", ""]
    if quality is not None:
        header = "| recipe | nDCG@10 | MRR@10 | R@100 | nDCG@10 @256 | @128 | @64 | train s |"
        rows += [
            f"SciFact test (300 queries, whole corpus), {epochs:g} epoch(s), batch 32, lr 2e-5, seed 42, "
            "no checkpoint selection:",
            "",
            header,
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, result in quality.items():
            s = result["scores"]
            rows.append(
                f"| {label} | {s['ndcg@10']:.4f} | {s['mrr@10']:.4f} | {s['recall@100']:.4f} | "
                f"{s['ndcg@10@256d']:.4f} | {s['ndcg@10@128d']:.4f} | {s['ndcg@10@64d']:.4f} | "
                f"{result['train_s']:.0f} |"
            )
    with BENCHMARKS_MD.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["memory", "quality", "memory-step"], help="Run one part only.")
    parser.add_argument("--epochs", type=float, default=1.0, help="Epochs per recipe in the quality part.")
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"SciFact not found at {SCIFACT}: this benchmark needs ../shared/datasets/scifact.")
    if args.part == "memory-step":
        batch, mini = (int(value) for value in args.rest)
        print(json.dumps(memory_step(batch, mini or None)))
        return
    memory = run_memory_part() if args.part in (None, "memory") else None
    quality = run_quality_part(args.epochs) if args.part in (None, "quality") else None
    if quality is not None:
        print(format_quality(quality))
    if not args.no_record:
        append_markdown(memory, quality, args.epochs)


if __name__ == "__main__":
    main()
