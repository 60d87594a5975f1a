"""KorQuAD 1.0 end to end: prepare (SQuAD JSON -> BEIR, at run time) -> data check -> train -> test report.

The licence of KorQuAD forbids redistributing converted copies, so the BEIR folder is written to a temporary folder
and never kept. The offline models have English vocabularies (all-MiniLM-L6-v2's uncased BERT tokenizer splits Hangul
into jamo), so absolute figures are low; the point is that the whole path runs on Korean text, and whether
fine-tuning helps is measured on the held-out article-level test split, with its paired significance.

    .venv/bin/python bench/korquad.py                      # rows appended to docs/benchmarks.md
    .venv/bin/python bench/korquad.py --max-steps 50 --no-record
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
KORQUAD = ROOT.parent / "shared" / "datasets" / "korquad-v1.0" / "KorQuAD_v1.0_dev.json"
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"


def embedtune(*args: str) -> str:
    """Run one ``embedtune`` command; return its standard output."""
    finished = subprocess.run([sys.executable, "-m", "embedtune", *args], check=True, capture_output=True, text=True)
    return finished.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=200, help="train.max_steps.")
    parser.add_argument("--batch-size", type=int, default=16, help="train.batch_size.")
    parser.add_argument("--max-seq-length", type=int, default=256, help="model.max_seq_length.")
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    args = parser.parse_args()
    if not KORQUAD.is_file():
        sys.exit(f"KorQuAD not found at {KORQUAD}: this benchmark needs ../shared/datasets/korquad-v1.0.")
    work = Path(tempfile.mkdtemp(prefix="embedtune-korquad-"))
    beir = work / "korquad-beir"
    started = time.time()
    prepared = embedtune("prepare", "squad", str(KORQUAD), str(beir))
    prepare_s = time.time() - started
    print(prepared)
    check = json.loads(embedtune("data", "check", str(beir), "--json"))
    sample = json.loads((beir / "queries.jsonl").read_text(encoding="utf-8").splitlines()[0])["text"]
    settings = [
        f"data.path={beir}",
        f"runs_dir={work / 'runs'}",
        "name=korquad",
        f"train.max_steps={args.max_steps}",
        f"train.batch_size={args.batch_size}",
        f"model.max_seq_length={args.max_seq_length}",
        "train.eval_strategy=steps",
        f"train.eval_steps={max(args.max_steps // 4, 1)}",
    ]
    embedtune("-q", "train", *[part for setting in settings for part in ("--set", setting)])
    (folder,) = (work / "runs").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    significance = metrics.get("significance") or {}
    report = metrics["report"]
    lines = [
        f"prepare: {prepare_s:.1f} s; splits {json.dumps(metrics['splits'])}; first query {sample!r}",
        f"token lengths (all-MiniLM-L6-v2): {json.dumps(check.get('lengths'), ensure_ascii=False)}",
        "",
        "| split | nDCG@10 base → fine-tuned | MRR@10 | Recall@100 | p (paired randomisation) | train (s) |",
        "|---|---|---|---|---|---|",
        f"| {report['split']} ({report['role']}) | {report['base']['ndcg@10']:.4f} → "
        f"{report['fine_tuned']['ndcg@10']:.4f} | {report['base']['mrr@10']:.4f} → "
        f"{report['fine_tuned']['mrr@10']:.4f} | {report['base']['recall@100']:.4f} → "
        f"{report['fine_tuned']['recall@100']:.4f} | {significance.get('p_permutation', float('nan')):.4f} | "
        f"{metrics['train_time_s']:.0f} |",
        "",
        f"selection: {metrics['selection']['verdict']}",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        heading = f"\n## KorQuAD 1.0 end to end ({date.today()}, commit {commit.stdout.strip()})\n\n"
        with BENCHMARKS_MD.open("a", encoding="utf-8") as handle:
            handle.write(heading + f"`python {' '.join(sys.argv)}`\n\n" + text + "\n")


if __name__ == "__main__":
    main()
