"""Token counters of ``embedtune data check``: a model's tokenizer (resolved offline-first) or whitespace words."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from embedtune.model_paths import ModelNotFoundError, check_model_available

WHITESPACE = "whitespace"
"""The ``--model`` value that counts whitespace-separated words instead of a model's tokens."""
DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""Tokenizer used when no model is named (resolved offline to the packaged copy)."""
UNBOUNDED_LENGTH = 1_000_000
"""A tokenizer ``model_max_length`` at or above this is Hugging Face's "no limit" placeholder (``1e30``)."""
_BATCH = 1000


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens of texts the way a model would see them.

    Attributes:
        name: The ``--model`` value it was made from (``"whitespace"`` for whitespace words).
        max_seq_length: Longest input in tokens the model keeps, or ``None`` when unknown.
        count: Texts -> token count of each (same order), special tokens included, nothing truncated.
    """

    name: str
    max_seq_length: int | None
    count: Callable[[Sequence[str]], list[int]]


def whitespace_counter(max_seq_length: int | None = None) -> TokenCounter:
    """Return a counter of whitespace-separated words (fast, no model needed).

    Args:
        max_seq_length: Limit in words above which a text counts as truncated; ``None`` for no limit.
    """
    return TokenCounter(WHITESPACE, max_seq_length, lambda texts: [len(text.split()) for text in texts])


def load_token_counter(model: str = DEFAULT_MODEL, max_seq_length: int | None = None) -> TokenCounter:
    """Return a token counter for ``model``: a model folder or name, or ``"whitespace"``.

    The model is resolved offline-first (:func:`~embedtune.model_paths.check_model_available`, which uses
    :func:`~embedtune.model_paths.resolve_model_path`: the packaged all-MiniLM-L6-v2 needs no network); for a
    sentence-transformers folder the tokenizer and ``sentence_bert_config.json`` are read from its Transformer
    module (the folder itself or the sub-folder ``modules.json`` names). The limit is, in this order,
    ``max_seq_length``, the config's ``max_seq_length``, the tokenizer's ``model_max_length``.

    Args:
        model: Model folder, model name, or ``"whitespace"``.
        max_seq_length: Limit in tokens overriding the model's; ``None`` keeps the model's.

    Returns:
        The counter; it counts special tokens (``[CLS]``, ``[SEP]``) as the model's inputs hold them.

    Raises:
        ValueError: if ``max_seq_length`` is not a positive integer.
        ModelNotFoundError: (an ``OSError``) if the tokenizer cannot be loaded.
    """
    if max_seq_length is not None and (isinstance(max_seq_length, bool) or max_seq_length < 1):
        raise ValueError(f"max_seq_length must be a positive integer, got {max_seq_length!r}")
    if model == WHITESPACE:
        return whitespace_counter(max_seq_length)
    # transformers: only for a model's tokenizer (the whitespace counter needs none)
    from transformers import AutoTokenizer

    folder = _transformer_folder(check_model_available(model))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split())[:300]
        raise ModelNotFoundError(f"cannot load the tokenizer of model '{model}': {message}") from error
    limit = max_seq_length or _configured_length(folder) or tokenizer.model_max_length
    limit = limit if isinstance(limit, int) and limit < UNBOUNDED_LENGTH else None

    def count(texts: Sequence[str]) -> list[int]:
        batches = (list(texts[start : start + _BATCH]) for start in range(0, len(texts), _BATCH))
        encoded = (tokenizer(batch, truncation=False, verbose=False)["input_ids"] for batch in batches)
        return [len(ids) for batch in encoded for ids in batch]

    return TokenCounter(model, limit, count)


def _transformer_folder(resolved: str) -> str:
    """Return the folder of a sentence-transformers model's Transformer module, or ``resolved`` unchanged."""
    folder = Path(resolved)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        for module in modules:
            if str(module.get("type", "")).endswith(".Transformer"):
                return str(folder / module.get("path", ""))
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return resolved


def _configured_length(folder: str) -> int | None:
    """Return ``max_seq_length`` of ``folder/sentence_bert_config.json`` when present and an integer."""
    try:
        value = json.loads((Path(folder) / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
