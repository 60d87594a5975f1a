"""``embedtune cache info|clear``: inspect or empty the on-disk embedding cache."""

from __future__ import annotations

import argparse
import json


def add_cache_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune cache`` and its actions ``info`` and ``clear``."""
    cache = commands.add_parser(
        "cache",
        help="Inspect or empty the embedding cache.",
        description="The embedding cache keeps query and document embeddings of unchanged models (same weights, "
        "prompts and length) so that 'embedtune eval' and a run's base-model evaluation do not encode them again.",
    )
    cache.add_argument(
        "--cache-dir", help="Cache folder (default $EMBEDTUNE_CACHE_DIR or ~/.cache/embedtune/embeddings)."
    )
    actions = cache.add_subparsers(dest="cache_command", required=True)
    info = actions.add_parser(
        "info", help="Size, entries and models.", description="Show the cache's size and what it holds per model."
    )
    info.add_argument("--json", action="store_true", help="Print the description as one JSON object.")
    actions.add_parser("clear", help="Delete every cached embedding.", description="Delete every cached embedding.")
    cache.set_defaults(handler=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    """Print the cache's description, or empty it; returns 0."""
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.cache import EmbeddingCache

    cache = EmbeddingCache(args.cache_dir)
    if args.cache_command == "clear":
        removed = cache.clear()
        print(f"Cleared {cache.root}: {removed['files']} files, {_size(removed['bytes'])}")
        return 0
    info = cache.info()
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"Embedding cache {info['root']}")
    print(f"  {_size(info['bytes'])} of {_size(info['max_bytes'])} in {info['chunks']} chunks")
    print(f"  {info['entries']} embeddings, {info['fingerprints']} model fingerprints")
    if info["corrupt"]:
        print(f"  {info['corrupt']} corrupt chunks (deleted and re-encoded on their next use)")
    for model in info["models"]:
        entries = model["entries"]
        print(
            f"  {model['fingerprint'][:12]}  {entries['document']} documents, {entries['query']} queries, "
            f"{_size(model['bytes'])}, last used {model['last_used']}  {model['source'] or '(unknown source)'}"
        )
    return 0


def _size(size: int) -> str:
    """Format a byte count for people: ``512 B``, ``3.2 MiB``, ``2.0 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
