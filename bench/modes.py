"""Training modes on SciFact with all-MiniLM-L6-v2: full fine-tuning, LoRA and a projection head on a frozen encoder.

(a) ``modes``: the full ``embedtune train`` pipeline per mode (dev carved from train selects the checkpoint; test is
    only reported), same epochs, batch size, seed and data; each in its own subprocess so its peak memory is its own:

    - full: every weight, learning rate 2e-5 (the default)
    - LoRA: r=8, alpha=16 on the detected query/key/value projections, learning rate 2e-4 (adapters need a
      higher rate than full fine-tuning; not tuned here)
    - head: a 256-d linear head on the frozen encoder, trained from cached embeddings at ``train.head_learning_rate``

    Test nDCG@10 base -> fine-tuned with the paired randomisation p-value, train time, peak memory and the
    trainable parameters each run recorded.
(b) ``epoch``: head mode's time per epoch from the cache (read from the head run's ``train.log``) against one epoch of
    running the frozen encoder on every step's texts (forward only, no gradients: the least a non-caching head
    trainer must do), measured over a few steps of the same batches and scaled to the epoch.

    .venv/bin/python bench/modes.py                 # both parts, rows appended to docs/benchmarks.md
    .venv/bin/python bench/modes.py --epochs 1 --no-record
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
MODES = {
    "full": [],
    "LoRA r=8 alpha=16": ["train.mode=lora", "lora.rank=8", "lora.alpha=16", "train.learning_rate=2e-4"],
    "head 256-d, frozen encoder": ["train.mode=head", "head.dim=256"],
}


def train(label: str, overrides: list[str], runs_dir: Path) -> dict:
    """Run ``embedtune train`` in a subprocess; return the figures of its metrics.json."""
    command = [sys.executable, "-m", "embedtune", "-q", "train", "--set", f"data.path={SCIFACT}"]
    name = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    for override in [f"runs_dir={runs_dir}", f"name={name}", *overrides]:
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
        "p_value": significance.get("p_permutation"),
        "verdict": metrics["selection"].get("verdict"),
        "train_time_s": metrics["train_time_s"],
        "peak_memory_mb": metrics["peak_memory_mb"],
        "trainable": (metrics.get("trainable_parameters") or {}).get("trainable"),
        "total": (metrics.get("trainable_parameters") or {}).get("total"),
        "run_folder": str(folder),
    }


def head_epoch_times(run_folder: str) -> list[float]:
    """Seconds of training steps per epoch that head mode logged (``Head epoch ...: X s of training steps``)."""
    text = (Path(run_folder) / "train.log").read_text(encoding="utf-8")
    return [float(seconds) for seconds in re.findall(r"Head epoch [\d.]+: ([\d.]+) s of training steps", text)]


def encoder_epoch_seconds(batch_size: int, steps: int = 4) -> dict:
    """Time the frozen encoder's forward pass over ``steps`` training batches; scale to one epoch of batches."""
    import torch

    from embedtune.config import build_config
    from embedtune.data.prepare import prepare_data
    from embedtune.models.loading import load_model

    torch.set_num_threads(2)
    data = prepare_data(build_config(overrides=[f"data.path={SCIFACT}"]).data)
    rows = [(example.query, positive) for example in data.train_examples for positive in example.pos]
    model = load_model("all-MiniLM-L6-v2")
    model.eval()
    timings = []
    for step in range(steps):
        batch = rows[step * batch_size : (step + 1) * batch_size]
        started = time.perf_counter()
        with torch.inference_mode():
            model.encode([query for query, _ in batch], batch_size=batch_size)
            model.encode([passage for _, passage in batch], batch_size=batch_size)
        timings.append(time.perf_counter() - started)
    per_step = sum(timings) / len(timings)
    steps_per_epoch = -(-len(rows) // batch_size)
    epoch = per_step * steps_per_epoch
    return {"per_step_s": round(per_step, 2), "steps_per_epoch": steps_per_epoch, "epoch_s": epoch}


def format_tables(results: list[dict], epoch: dict | None) -> str:
    """Markdown tables of both parts."""
    lines = [
        "| mode | test nDCG@10 base → fine-tuned | Δ (p) | train (s) | peak memory (MiB) | trainable parameters |",
        "|---|---|---|---|---|---|",
    ]
    for row in results:
        p_value = "-" if row["p_value"] is None else f"{row['p_value']:.4f}"
        share = f"{row['trainable']:,} of {row['total']:,}" if row["trainable"] else "-"
        lines.append(
            f"| {row['label']} | {row['base']:.4f} → {row['fine_tuned']:.4f} | "
            f"{row['fine_tuned'] - row['base']:+.4f} ({p_value}) | {row['train_time_s']:.0f} | "
            f"{row['peak_memory_mb']:.0f} | {share} |"
        )
    if epoch is not None:
        lines += [
            "",
            "| head mode, one epoch | seconds |",
            "|---|---|",
            f"| from cached embeddings (mean of {len(epoch['cached'])} epochs) | {epoch['cached_mean_s']:.2f} |",
            f"| re-running the frozen encoder every step ({epoch['encoder']['per_step_s']} s × "
            f"{epoch['encoder']['steps_per_epoch']} steps) | {epoch['encoder']['epoch_s']:.0f} |",
            f"| speed-up | {epoch['speedup']:.0f}× |",
        ]
    return "\n".join(lines)


def append_markdown(text: str, command: str) -> None:
    """Append the tables under a dated heading to docs/benchmarks.md."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    heading = f"\n## Training modes: full, LoRA, head ({date.today()}, commit {commit.stdout.strip()})\n\n"
    with BENCHMARKS_MD.open("a", encoding="utf-8") as handle:
        handle.write(heading + f"`{command}`\n\n" + text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=4.0, help="train.epochs of every mode.")
    parser.add_argument("--batch-size", type=int, default=32, help="train.batch_size of every mode.")
    parser.add_argument("--modes", nargs="*", choices=list(MODES), default=list(MODES), help="Modes to run.")
    parser.add_argument("--runs-dir", type=Path, help="Where the runs go (default: a temporary folder).")
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"SciFact not found at {SCIFACT}: this benchmark needs ../shared/datasets/scifact.")
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="embedtune-modes-"))
    common = [f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", "model.max_seq_length=256"]
    results = []
    for label in args.modes:
        results.append(train(label, [*common, *MODES[label]], runs_dir))
        print(json.dumps(results[-1]), flush=True)
    epoch = None
    head = [row for row in results if row["label"].startswith("head")]
    if head:
        cached = head_epoch_times(head[0]["run_folder"])
        encoder = encoder_epoch_seconds(args.batch_size)
        mean = sum(cached) / len(cached)
        epoch = {"cached": cached, "cached_mean_s": mean, "encoder": encoder, "speedup": encoder["epoch_s"] / mean}
        print(json.dumps(epoch), flush=True)
    text = format_tables(results, epoch)
    print(text)
    if not args.no_record:
        append_markdown(text, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
