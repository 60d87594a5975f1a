"""``embedtune eval``: models (paths, names or runs) on BEIR splits, beside a baseline, with paired significance."""

from __future__ import annotations

import argparse

from embedtune.cli.encoding_options import (
    add_backend_argument,
    add_batch_size_argument,
    add_cache_arguments,
    add_precision_argument,
    add_processes_argument,
    embedding_cache_of,
    encoding_devices_of,
)
from embedtune.evaluation import compare_inputs
from embedtune.evaluation.compare_inputs import resolve_model_source


def add_eval_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune eval``."""
    evaluate = commands.add_parser(
        "eval",
        help="Evaluate models on BEIR splits, side by side with a baseline, with paired significance tests.",
        description="Rank the whole corpus for every judged query of each split and report nDCG@10, MAP@100, "
        "Recall@10, Recall@100 and MRR@10 (trec_eval definitions) for the baseline and each model, each model's "
        "difference to the baseline, and one verdict line per model on nDCG@10: bootstrap 95 % interval, "
        "wins/losses/ties, paired randomisation test and t-test. Queries and documents get the model's own prompts "
        "(a model trained by embedtune carries its prefixes).",
    )
    evaluate.add_argument(
        "--model",
        action="append",
        required=True,
        help="Model folder or name, or a run (name or folder); repeat for several models.",
    )
    evaluate.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="FOLDER[:SPLIT]",
        help="BEIR folder, optionally with its split; repeat for several datasets.",
    )
    evaluate.add_argument("--split", default="test", help="qrels split of a --data without one (default test).")
    evaluate.add_argument(
        "--train-data",
        metavar="PATH",
        help="The data the models were trained on (a BEIR folder's train split, or a JSONL training file): each "
        "comparison is also split into seen queries (a relevant document was a training positive) and unseen ones.",
    )
    baseline = evaluate.add_mutually_exclusive_group()
    baseline.add_argument(
        "--baseline",
        help="Model every --model is compared with (also a run). Default: the base model of the runs, when every "
        "--model is a run and they share one.",
    )
    baseline.add_argument("--no-baseline", action="store_true", help="Report the models only, without comparison.")
    evaluate.add_argument("--out", help="Write summary.json and per_query.jsonl into this new folder.")
    evaluate.add_argument("--alpha", type=float, default=0.05, help="Significance level (default 0.05).")
    evaluate.add_argument(
        "--resamples", type=int, default=10_000, help="Bootstrap and permutation resamples (default 10000)."
    )
    evaluate.add_argument("--query-prefix", default="", help="Override the models' query prompt.")
    evaluate.add_argument("--passage-prefix", default="", help="Override the models' document prompt.")
    evaluate.add_argument("--max-seq-length", type=int, help="Truncation length in tokens.")
    add_batch_size_argument(evaluate)
    evaluate.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    add_processes_argument(evaluate)
    add_backend_argument(evaluate, "each --model (the baseline: auto)")
    add_precision_argument(evaluate)
    add_cache_arguments(evaluate)
    evaluate.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Resolve models, load datasets, evaluate, print the tables and verdicts, write ``--out``; returns 0.

    Raises:
        ValueError: on a bad setting, an existing ``--out``, a model given twice or bad data (DataError).
        embedtune.model_paths.ModelNotFoundError: if a model cannot be found.
    """
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.evaluation import compare
    from embedtune.evaluation.seen_unseen import add_to_eval_results, load_training_positives

    if args.max_seq_length is not None and args.max_seq_length < 1:
        raise ValueError("--max-seq-length must be positive")
    if args.resamples < 1 or not 0.0 < args.alpha < 1.0:
        raise ValueError("--resamples must be positive and --alpha in (0, 1)")
    out = compare_inputs.check_out_dir(args.out) if args.out else None
    models = [compare_inputs.resolve_model_source(ref, args.runs_dir) for ref in args.model]
    compare_inputs.check_model_labels(models)
    if args.baseline:
        baseline = compare_inputs.resolve_model_source(args.baseline, args.runs_dir)
    else:
        baseline = None if args.no_baseline else compare_inputs.default_baseline(models)
    datasets = compare_inputs.load_datasets(args.data, args.split)
    positives = None if args.train_data is None else load_training_positives(args.train_data)
    if positives is not None and baseline is None:
        raise ValueError("--train-data splits the comparison with a baseline: drop --no-baseline or give --baseline")
    results = compare.evaluate_models(
        datasets,
        models,
        baseline,
        lambda source: _load(source, args, args.backend if source in models else "auto"),
        batch_size=args.batch_size,
        resamples=args.resamples,
        alpha=args.alpha,
        cache=embedding_cache_of(args),
        devices=encoding_devices_of(args),
        precision=args.precision,
    )
    if positives is not None:
        add_to_eval_results(results, positives)
    print(results.format())
    if out is not None:
        print(f"\nResults: {compare.write_results(results, out)}")
    return 0


def resolve_model_reference(ref: str, runs_dir: str) -> str:
    """Turn ``--model`` into something loadable: a run folder or run name gives its ``model/``; else ``ref``.

    Raises:
        embedtune.model_paths.ModelNotFoundError: if ``ref`` is neither a run nor an available model.
    """
    return resolve_model_source(ref, runs_dir).path


def _load(source: compare_inputs.ModelSource, args: argparse.Namespace, backend: str):
    """Load ``source`` with its load settings, the command line's ``--max-seq-length`` and prefixes taking over."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.models.loading import load_model

    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.models.prompts import set_prompts

    settings = source.settings
    length = args.max_seq_length if args.max_seq_length is not None else settings.max_seq_length
    model = load_model(source.path, length, backend=backend)
    set_prompts(model, args.query_prefix or settings.query_prefix, args.passage_prefix or settings.passage_prefix)
    return model
