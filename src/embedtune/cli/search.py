"""``embedtune index build`` and ``embedtune search``: save a corpus's search index, then query it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embedtune.cli.encoding_options import (
    add_backend_argument,
    add_batch_size_argument,
    add_cache_arguments,
    add_precision_argument,
    add_processes_argument,
    embedding_cache_of,
    encoding_devices_of,
)
from embedtune.cli.evaluate import resolve_model_reference
from embedtune.search.corpus import load_search_corpus
from embedtune.search.vectors import EXACT_MAX_DOCS, INDEX_KINDS

PREVIEW_CHARS = 100
"""Longest document text shown per hit by ``embedtune search`` (``--json`` gives the whole text)."""


def add_index_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune index`` and its sub-command ``build``."""
    index = commands.add_parser("index", help="Build a search index of a corpus.")
    actions = index.add_subparsers(dest="index_command", required=True)
    build = actions.add_parser(
        "build",
        help="Encode a corpus with a model and save a faiss index folder.",
        description="Encode every document with the model (its document prompt applied) and save OUT: index.faiss, "
        "ids.json, texts.jsonl and index.json (the model, dimension, similarity, prompts, kind and count). The "
        "corpus is validated before the model loads. OUT must not exist; it appears only once complete.",
    )
    build.add_argument("--model", required=True, help="Model folder or name, or a run (name or folder).")
    build.add_argument(
        "--corpus", required=True, help='BEIR corpus.jsonl, a JSONL file of {"id", "text"} objects, or a BEIR folder.'
    )
    build.add_argument("out", metavar="OUT", help="Index folder to create (must not exist).")
    build.add_argument(
        "--kind",
        choices=INDEX_KINDS,
        default="auto",
        help=f"exact (faiss IndexFlatIP), hnsw or ivf (approximate); auto: exact up to {EXACT_MAX_DOCS:,} "
        "documents, hnsw above (default auto).",
    )
    add_batch_size_argument(build)
    build.add_argument("--max-seq-length", type=int, help="Truncation length in tokens (default: the model's).")
    build.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    add_processes_argument(build)
    add_backend_argument(build)
    add_precision_argument(build)
    add_cache_arguments(build)
    build.set_defaults(handler=run_index_build)


def add_search_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune search``."""
    search = commands.add_parser(
        "search",
        help="Search a saved index for a query.",
        description="Encode the query with the index's model (its query prompt applied) and print the best "
        "documents: rank, score, id and the start of the text, or JSON with --json.",
    )
    search.add_argument("index", metavar="INDEX", help="Index folder written by 'embedtune index build'.")
    search.add_argument("query", help="The query text.")
    search.add_argument("--top-k", type=int, default=10, help="Documents to show (default 10).")
    search.add_argument("--json", action="store_true", help="Print the hits as one JSON object.")
    search.add_argument(
        "--model",
        help="Model to encode the query with (folder, name or run); default: the one recorded in index.json. "
        "It must be the model the index was built with.",
    )
    search.add_argument("--runs-dir", default="runs", help="Where run names are looked up (default runs).")
    add_backend_argument(search, "the query model")
    search.set_defaults(handler=run_search)


def run_index_build(args: argparse.Namespace) -> int:
    """Validate the corpus, load the model, build and save the index; returns the exit code."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.models.loading import load_model

    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.search.index import build_index, ensure_absent

    devices = encoding_devices_of(args)
    if args.max_seq_length is not None and args.max_seq_length < 1:
        raise ValueError("--max-seq-length must be positive")
    out = Path(args.out).expanduser()
    ensure_absent(out)
    corpus = load_search_corpus(args.corpus)
    model_path = resolve_model_reference(args.model, args.runs_dir)
    if Path(model_path).is_dir():
        model_path = str(Path(model_path).resolve())
    model = load_model(model_path, args.max_seq_length, backend=args.backend)
    index = build_index(
        model,
        corpus,
        out,
        args.kind,
        batch_size=args.batch_size,
        model_reference=args.model,
        model_path=model_path,
        devices=devices,
        cache=embedding_cache_of(args),
        precision=args.precision,
    )
    info = index.info
    print(f"indexed {info.count} documents in {out} ({info.kind}, {info.dimension} dimensions, {info.similarity})")
    return 0


def run_search(args: argparse.Namespace) -> int:
    """Search the index and print the hits; returns the exit code."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.search.retriever import Retriever

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    if not args.query.strip():
        raise ValueError("empty query")
    model = resolve_model_reference(args.model, args.runs_dir) if args.model else None
    label = args.model if model in (None, args.model) else f"{args.model} ({model})"
    index = Path(args.index).expanduser()
    retriever = Retriever.load(index, model=model, progress=False, model_label=label, backend=args.backend)
    hits = retriever.search(args.query, top_k=args.top_k)
    if args.json:
        rows = [{"rank": rank, "id": hit.id, "score": hit.score, "text": hit.text} for rank, hit in enumerate(hits, 1)]
        record = {"index": args.index, "query": args.query, "top_k": args.top_k, "hits": rows}
        print(json.dumps(record, ensure_ascii=False, indent=2))
        return 0
    id_width = max((len(hit.id) for hit in hits), default=2)
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>3}  {hit.score:7.4f}  {hit.id:<{id_width}}  {preview(hit.text)}")
    return 0


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """Return ``text`` on one line (runs of whitespace become one space), cut to ``limit`` characters with ``...``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."
