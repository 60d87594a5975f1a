"""``embedtune mine DATA OUT``: mine hard negatives for a BEIR split or a training file into a training JSONL file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from embedtune.cli.encoding_options import (
    add_batch_size_argument,
    add_cache_arguments,
    add_precision_argument,
    add_processes_argument,
    embedding_cache_of,
    encoding_devices_of,
)
from embedtune.cli.evaluate import resolve_model_reference
from embedtune.config import ConfigError
from embedtune.data.training_file import write_triplets

if TYPE_CHECKING:
    from embedtune.mining.candidates import DenseEncoder, MiningInput

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_SPLIT = "train"
# Mirrors of embedtune.mining.mine / embedtune.search.top_k constants (tests check they agree): importing those
# modules imports torch, which the command line must not do before a command runs.
RETRIEVERS = ("dense", "bm25", "both")
SAMPLING_STRATEGIES = ("top", "random")
SEARCH_KINDS = ("auto", "exact", "hnsw", "ivf")
EXACT_MAX_DOCS = 1_000_000
DEFAULT_CHUNK_SIZE = 50_000
WEIGHT_MIN, WEIGHT_MAX = 0.5, 2.0
TEACHER_KINDS = ("auto", "bi-encoder", "cross-encoder")


def add_mine_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune mine``."""
    mine = commands.add_parser(
        "mine",
        help="Mine hard negatives into a training file.",
        description="Retrieve candidates for every training query (dense model, BM25 or both), set aside its known "
        "positives (by id and text), its own text and candidates too close to its best positive, and keep "
        "--num-negatives from the rank window [--range-min, --range-max) (ranks among the candidates left, as in "
        "sentence-transformers' mine_hard_negatives). OUT is read by 'embedtune train --train-file OUT'. All data "
        "and settings are checked before the model loads; OUT appears only once complete.",
    )
    mine.add_argument(
        "data", metavar="DATA", help="BEIR folder (its --split queries are mined) or a training JSONL file with pos."
    )
    mine.add_argument("out", metavar="OUT", help="Training JSONL file to write.")
    mine.add_argument(
        "--split", help=f"qrels split of a BEIR folder whose queries are mined (default {DEFAULT_SPLIT})."
    )
    mine.add_argument(
        "--corpus",
        help="Documents to mine from for a training file: BEIR corpus.jsonl, {id, text} JSONL or BEIR folder "
        "(default: every pos and neg passage of the file).",
    )
    mine.add_argument(
        "--retriever",
        choices=RETRIEVERS,
        default="dense",
        help="dense (the model), bm25 (bm25s, no model, BM25 scores) or both (lists interleaved, dense scores, "
        "neg_sources recorded); default dense.",
    )
    mine.add_argument(
        "--model", help=f"Model folder or name, or a run (default {DEFAULT_MODEL}); unused with --retriever bm25."
    )
    mine.add_argument("--max-seq-length", type=int, help="Truncation length in tokens (default: the model's).")
    add_batch_size_argument(mine)
    mine.add_argument("--device", help="cpu, cuda, ... (default: sentence-transformers' choice).")
    mine.add_argument(
        "--search",
        choices=SEARCH_KINDS,
        default="auto",
        help=f"Dense search: exact (chunked, bounded memory), hnsw or ivf (faiss); auto: exact up to "
        f"{EXACT_MAX_DOCS:,} documents, hnsw above (default auto).",
    )
    mine.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help=f"Documents scored per block by exact search (default {DEFAULT_CHUNK_SIZE:,}).",
    )
    mine.add_argument("--query-batch-size", type=int, default=1024, help="Queries per scored block (default 1024).")
    mine.add_argument("--range-min", type=int, default=10, help="First rank kept, 0-based (default 10).")
    mine.add_argument("--range-max", type=int, default=100, help="Rank after the last one kept (default 100).")
    mine.add_argument("--num-negatives", type=int, default=5, help="Negatives per query (default 5).")
    mine.add_argument(
        "--sampling", choices=SAMPLING_STRATEGIES, default="top", help="top or random (seeded) from the window."
    )
    mine.add_argument("--seed", type=int, default=42, help="Seed of --sampling random (default 42).")
    mine.add_argument("--margin", type=float, help="Drop candidates scoring above best positive - MARGIN.")
    mine.add_argument(
        "--relative-margin", type=float, help="Drop candidates above best positive - |best positive| x VALUE."
    )
    mine.add_argument("--max-score", type=float, help="Drop candidates scoring above this (likely false negatives).")
    mine.add_argument(
        "--weights",
        action="store_true",
        help=f"Write neg_weights = clip(1 - alpha (gap - mean gap) / std gap, {WEIGHT_MIN}, {WEIGHT_MAX}), gap = "
        "best positive score - negative score: harder negatives weigh more.",
    )
    mine.add_argument("--weight-alpha", type=float, default=0.5, help="alpha of --weights (default 0.5).")
    mine.add_argument(
        "--features-from-sources",
        action="store_true",
        help='With --retriever both: also write neg_features = neg_sources (["dense"], ["bm25"] or both), to '
        "weigh negatives by the retriever that found them with a weight config (data.feature_weights).",
    )
    mine.add_argument(
        "--teacher",
        metavar="MODEL",
        help="Score every pair of OUT again with this model (folder, name or run) for loss.name margin_mse or "
        "distill_kl: pos_scores/neg_scores become its cosines (bi-encoder) or raw logits (cross-encoder; train "
        "with loss.teacher_scale=1). The negatives are still those the retriever chose.",
    )
    mine.add_argument(
        "--teacher-kind",
        choices=TEACHER_KINDS,
        default="auto",
        help="auto tells a sentence-transformers CrossEncoder (or a ...ForSequenceClassification folder) from a "
        "bi-encoder by its config files (default auto).",
    )
    add_processes_argument(mine)
    add_precision_argument(mine)
    add_cache_arguments(mine)
    mine.add_argument("--overwrite", action="store_true", help="Replace OUT if it exists.")
    mine.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    mine.set_defaults(handler=run_mine)


def run_mine(args: argparse.Namespace) -> int:
    """Check the settings and data, load the model, mine, write OUT and print a summary; returns the exit code."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.mining.mine import MiningSettings, mine_hard_negatives, peak_rss_bytes

    start = time.perf_counter()
    settings = MiningSettings(
        retriever=args.retriever,
        range_min=args.range_min,
        range_max=args.range_max,
        num_negatives=args.num_negatives,
        sampling_strategy=args.sampling,
        margin=args.margin,
        relative_margin=args.relative_margin,
        max_score=args.max_score,
        seed=args.seed,
        search=args.search,
        chunk_size=args.chunk_size,
        query_batch_size=args.query_batch_size,
        weights=args.weights,
        weight_alpha=args.weight_alpha,
        features_from_sources=args.features_from_sources,
    )
    settings.check()
    teacher_path = resolve_model_reference(args.teacher, args.runs_dir) if args.teacher else None
    data = _load_data(args)
    encoder = _encoder(args) if settings.retriever != "bm25" else None
    examples, stats = mine_hard_negatives(data, settings, encoder)
    if teacher_path is not None:
        examples = _rescore(examples, teacher_path, args)
    write_triplets(
        Path(args.out).expanduser(),
        examples,
        neg_weights=settings.weights,
        features_from_sources=settings.features_from_sources,
    )
    search = f", {stats.search} search" if stats.search else ""
    drops = stats.drops
    print(f"mined {stats.queries:,} queries of {data.source}: {stats.num_docs:,} documents, {stats.retriever}{search}")
    print(
        f"negatives: {stats.negatives:,} ({stats.negatives_per_query:.2f} per query); "
        f"{stats.queries_without_negatives:,} queries left without negatives (kept with neg: []); "
        f"{stats.skipped_queries:,} judged queries without a relevant document skipped"
    )
    print(
        f"set aside: {drops.positive:,} positives, {drops.query:,} query texts, {drops.duplicate:,} duplicates, "
        f"{drops.margin:,} by margin, {drops.relative_margin:,} by relative margin, {drops.max_score:,} by max score"
    )
    hint = stats.sparse_negatives_hint()
    if hint:
        print(hint)
    total = time.perf_counter() - start
    peak = peak_rss_bytes() / 1024**3
    print(f"wrote {args.out} in {total:.1f} s (mining {stats.seconds:.1f} s); peak memory {peak:.2f} GiB (RSS)")
    return 0


def _load_data(args: argparse.Namespace) -> MiningInput:
    """Check OUT and the data options, then read and validate the data (before any model loads)."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.mining.mine import load_mining_beir, load_mining_jsonl

    if args.max_seq_length is not None and args.max_seq_length < 1:
        raise ConfigError(f"--max-seq-length: must be a positive integer, got {args.max_seq_length}")
    data, out = Path(args.data).expanduser(), Path(args.out).expanduser()
    if out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; OUT must be a file path")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: folder not found (the folder of OUT must exist)")
    if out.exists() and data.exists() and out.resolve() == data.resolve():
        raise ConfigError("OUT: must differ from DATA (the input would be replaced)")
    if data.is_dir():
        if args.corpus is not None:
            raise ConfigError("--corpus: only for a training JSONL file; a BEIR folder brings its own corpus.jsonl")
        return load_mining_beir(data, args.split or DEFAULT_SPLIT)
    if args.split is not None:
        raise ConfigError("--split: only for a BEIR folder; DATA is a training file")
    return load_mining_jsonl(data, args.corpus)


def _rescore(examples: list, teacher_path: str, args: argparse.Namespace) -> list:
    """Replace the records' scores by the teacher's (:func:`embedtune.mining.teacher.rescore`) and say so."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.mining.teacher import load_teacher, rescore

    started = time.perf_counter()
    options = {"batch_size": args.batch_size, "cache": embedding_cache_of(args), "precision": args.precision}
    teacher = load_teacher(teacher_path, args.teacher_kind, args.max_seq_length, args.device, **options)
    rescored = rescore(examples, teacher)
    pairs = sum(len(example.pos) + len(example.neg) for example in examples)
    print(f"teacher {args.teacher} ({teacher.kind}) scored {pairs:,} pairs in {time.perf_counter() - started:.1f} s")
    return rescored


def _encoder(args: argparse.Namespace) -> DenseEncoder:
    """Load the model and wrap it, with the embedding cache unless --no-cache."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.mining.candidates import model_encoder

    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.models.loading import load_model

    reference = resolve_model_reference(args.model or DEFAULT_MODEL, args.runs_dir)
    model = load_model(reference, args.max_seq_length, args.device)
    devices = encoding_devices_of(args)
    return model_encoder(model, args.batch_size, embedding_cache_of(args), devices=devices, precision=args.precision)
