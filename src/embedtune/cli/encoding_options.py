"""The encoding options of ``eval``, ``mine``, ``index build`` and ``search``: processes, backend, precision, cache."""

from __future__ import annotations

import argparse


def add_processes_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--processes N``: encode in N processes (sentence-transformers' multi-process pool)."""
    parser.add_argument(
        "--processes",
        type=int,
        help="Encode in N processes, spread over the visible GPUs, or N CPU processes without one (default: one "
        "process per GPU when there are several, else one process). Pays off for large corpora only.",
    )


def add_backend_argument(parser: argparse.ArgumentParser, applies_to: str = "the model") -> None:
    """Add ``--backend``: run ``applies_to`` with PyTorch, or onnxruntime (an ``export --format onnx`` folder)."""
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help=f"How {applies_to} runs: onnx (an 'embedtune export --format onnx' folder, run with onnxruntime on the "
        "CPU), torch (a sentence-transformers model), or auto: onnx for an ONNX export folder, else torch "
        "(default auto).",
    )


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--precision``: the autocast precision of encoding (the same for every model a command encodes)."""
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="Encoding precision: auto (bf16 on CUDA, fp16 on GPUs without bf16, bf16 on CPUs with AVX512-BF16 or "
        "AMX, else fp32), fp32, bf16 or fp16 (default auto). Several --processes encode in fp32.",
    )


def add_batch_size_argument(parser: argparse.ArgumentParser, while_doing: str = "") -> None:
    """Add ``--batch-size``: texts per encoding forward pass, a positive integer; left out, sized for the device."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help=f"Texts per forward pass{while_doing} (default: 64 on a CPU; on a GPU the largest power of two up to "
        "512 that fits a quarter of the free memory, halved on out-of-memory).",
    )


def positive_int(text: str) -> int:
    """Parse a command-line integer >= 1.

    Raises:
        argparse.ArgumentTypeError: for anything else (argparse prints it with the option's name, exit 2).
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def encoding_devices_of(args: argparse.Namespace) -> list[str] | None:
    """Return the devices ``--processes`` asks for (see :func:`embedtune.search.encoding.encoding_devices`).

    Raises:
        ValueError: if ``--processes`` is below 1.
    """
    # imports torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.search.encoding import encoding_devices

    return encoding_devices(args.processes)


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-cache`` and ``--cache-dir`` (mutually exclusive): whether and where embeddings are cached."""
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--no-cache",
        action="store_true",
        help="Encode everything; by default embeddings of an unchanged model (same weights, prompts, length) are "
        "reused from and stored in the embedding cache ('embedtune cache info').",
    )
    cache.add_argument(
        "--cache-dir", help="Embedding cache folder (default $EMBEDTUNE_CACHE_DIR or ~/.cache/embedtune/embeddings)."
    )


def embedding_cache_of(args: argparse.Namespace):
    """Return the :class:`~embedtune.cache.EmbeddingCache` the cache arguments ask for, or ``None`` for --no-cache."""
    # imports numpy and torch: only when the command runs, so `embedtune --help` starts fast
    from embedtune.cache import EmbeddingCache

    return None if args.no_cache else EmbeddingCache(args.cache_dir)
