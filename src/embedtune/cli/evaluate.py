"""``embedtune eval``: a model (path, run name or run folder) on a BEIR split, beside a baseline."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_eval_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune eval``."""
    evaluate = commands.add_parser(
        "eval",
        help="Evaluate a model on a BEIR split, optionally side by side with a baseline.",
        description="Rank the whole corpus for every judged query of a split and report nDCG@10, MAP@100, "
        "Recall@10, Recall@100 and MRR@10 (trec_eval definitions). Queries and documents get the model's own "
        "prompts (a model trained by embedtune carries its prefixes).",
    )
    evaluate.add_argument("--model", required=True, help="Model folder or name, or a run (name or folder).")
    evaluate.add_argument("--data", required=True, help="BEIR folder.")
    evaluate.add_argument("--split", default="test", help="qrels split to evaluate (default test).")
    evaluate.add_argument("--baseline", help="Model to report side by side, e.g. the base model (also a run).")
    evaluate.add_argument("--query-prefix", default="", help="Override the model's query prompt.")
    evaluate.add_argument("--passage-prefix", default="", help="Override the model's document prompt.")
    evaluate.add_argument("--max-seq-length", type=int, help="Truncation length in tokens.")
    evaluate.add_argument("--batch-size", type=int, default=64, help="Texts per forward pass.")
    evaluate.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    evaluate.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate the model (and the baseline) and print the table; returns the exit code."""
    from embedtune.data.beir import QRELS_DIR, load_beir
    from embedtune.data.errors import DataError
    from embedtune.evaluation.report import format_comparison
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator

    if args.batch_size < 1 or (args.max_seq_length is not None and args.max_seq_length < 1):
        raise ValueError("--batch-size and --max-seq-length must be positive")
    model_path = resolve_model_reference(args.model, args.runs_dir)
    baseline_path = resolve_model_reference(args.baseline, args.runs_dir) if args.baseline else None
    beir = load_beir(Path(args.data).expanduser(), splits=[args.split])
    if not any(score > 0 for judged in beir.qrels[args.split].values() for score in judged.values()):
        qrels_file = Path(args.data).expanduser() / QRELS_DIR / f"{args.split}.tsv"
        raise DataError(
            qrels_file, None, None, f"split '{args.split}': no judgement with score > 0, nothing to evaluate"
        )
    evaluator = RetrievalEvaluator(beir.corpus, beir.queries, beir.qrels[args.split], batch_size=args.batch_size)
    scores = evaluator(_load(model_path, args))
    if baseline_path:
        print(format_comparison(evaluator(_load(baseline_path, args)), scores, args.split))
    else:
        print("\n".join(f"{name:<14}{value:.4f}" for name, value in scores.items()))
    return 0


def resolve_model_reference(ref: str, runs_dir: str) -> str:
    """Turn ``--model`` into something loadable: a run folder or run name gives its ``model/``; else ``ref``.

    Raises:
        embedtune.models.loading.ModelNotFoundError: if ``ref`` is neither a run nor an available model.
    """
    from embedtune import runs
    from embedtune.models.loading import PACKAGED_MODEL_ALIASES, check_model_available

    candidate = Path(ref).expanduser()
    if candidate.exists():
        is_run = (candidate / "model").is_dir() and (candidate / runs.RUN_FILE).is_file()
        return check_model_available(str(candidate / "model" if is_run else candidate))
    if ref not in PACKAGED_MODEL_ALIASES:
        try:
            return str(runs.resolve_run(ref, runs_dir) / "model")
        except ValueError:
            pass
    return check_model_available(ref)


def _load(name_or_path: str, args: argparse.Namespace):
    from embedtune.models.loading import load_model
    from embedtune.models.prompts import set_prompts

    model = load_model(name_or_path, args.max_seq_length)
    set_prompts(model, args.query_prefix, args.passage_prefix)
    return model
