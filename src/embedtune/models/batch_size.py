"""How many texts one encoding forward pass takes: a number the user set, or one sized for the device.

``eval.batch_size: none`` (and ``--batch-size`` left out) sizes it: :data:`CPU_BATCH_SIZE` on a CPU, where larger
batches gain nothing (``bench/encode_batch.py``); on a GPU the largest power of two whose activations fit a
share of the free memory, up to :data:`MAX_BATCH_SIZE`, halved on out-of-memory until a batch fits. A size the user
set is used as given: an out-of-memory error then reaches them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

logger = logging.getLogger(__name__)

T = TypeVar("T")

CPU_BATCH_SIZE = 64
"""Texts per forward pass on a CPU: the fastest of 16-128 for MiniLM on SciFact abstracts (2 cores, bf16)."""
MAX_BATCH_SIZE = 512
"""The largest automatic GPU batch; bigger batches gain little once the GPU is busy."""
MEMORY_SHARE = 0.25
"""Share of the GPU's free memory one batch's activations may take (the rest: weights, caches, fragmentation)."""
ACTIVATION_BYTES = 64
"""Bytes per token and hidden unit alive at once in one layer's forward pass (about 16 fp32 values: Q, K, V,
attention output, the 4x feed-forward, residuals), a generous bound."""


def auto_batch_size(
    device: torch.device | str, max_seq_length: int, hidden_size: int, free_bytes: int | None = None
) -> int:
    """Return the automatic encoding batch size for ``device``.

    Args:
        device: Where the model runs; anything but CUDA gets :data:`CPU_BATCH_SIZE`.
        max_seq_length: Tokens per text at most (the model's truncation length).
        hidden_size: Width of the encoder's hidden states.
        free_bytes: Free GPU memory in bytes; ``None`` asks CUDA (``torch.cuda.mem_get_info``).

    Returns:
        A power of two in ``[1, MAX_BATCH_SIZE]`` on CUDA, :data:`CPU_BATCH_SIZE` elsewhere.

    Raises:
        ValueError: if ``max_seq_length`` or ``hidden_size`` is below 1.
    """
    if max_seq_length < 1 or hidden_size < 1:
        raise ValueError(f"max_seq_length and hidden_size must be >= 1, got {max_seq_length} and {hidden_size}")
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    fits = int(free_bytes * MEMORY_SHARE) // (max_seq_length * hidden_size * ACTIVATION_BYTES)
    size = 1
    while size * 2 <= min(fits, MAX_BATCH_SIZE):
        size *= 2
    return size


def model_batch_size(model: Any) -> int:
    """Return :func:`auto_batch_size` for a ``SentenceTransformer`` on its own device.

    The hidden size is the first module's ``auto_model.config.hidden_size`` (the embedding dimension where there
    is none); the length is ``model.max_seq_length`` (512 where unset).
    """
    config = getattr(getattr(_first_module(model), "auto_model", None), "config", None)
    hidden = getattr(config, "hidden_size", None) or _embedding_dimension(model)
    length = getattr(model, "max_seq_length", None) or 512
    return auto_batch_size(getattr(model, "device", None) or "cpu", int(length), int(hidden))


def encode_in_batches(model: Any, batch_size: int | None, encode: Callable[[int], T]) -> T:
    """Call ``encode(size)`` with the user's batch size, or with an automatic one that halves on out-of-memory.

    Args:
        model: The model ``encode`` runs (its device and shape size the automatic batch).
        batch_size: Texts per forward pass; ``None`` sizes it (:func:`model_batch_size`).
        encode: Encodes everything at the given batch size (a whole call is retried after an out-of-memory error:
            sentence-transformers encodes the longest texts first, so one fails on its first batch).

    Returns:
        What ``encode`` returns.

    Raises:
        ValueError: if ``batch_size`` is below 1.
        RuntimeError: out-of-memory at a batch size the user set, or at batch size 1.
    """
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return encode(batch_size)
    size = model_batch_size(model)
    while True:
        try:
            return encode(size)
        except Exception as error:  # noqa: BLE001 - accelerate's test tells an out-of-memory error from the rest
            if size == 1 or not should_reduce_batch_size(error):
                raise
        clear_device_cache(garbage_collection=True)
        logger.warning("out of memory encoding %d texts per batch; trying %d", size, size // 2)
        size //= 2


def _first_module(model: Any) -> Any:
    """Return the model's first module (the transformer), or ``None`` for a model that is not a module sequence."""
    try:
        return model[0]
    except (TypeError, IndexError, KeyError):
        return None


def _embedding_dimension(model: Any) -> int:
    """Return the model's output width, 768 when it does not say."""
    get = getattr(model, "get_embedding_dimension", None) or getattr(model, "get_sentence_embedding_dimension", None)
    return (get() if get is not None else None) or 768
