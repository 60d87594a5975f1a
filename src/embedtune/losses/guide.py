"""A frozen guide model that flags likely false negatives: candidates it scores close to (or above) the positive.

The guard of GISTEmbed (Solatorio, arXiv:2402.16829) and NV-Retriever's positive-aware filtering (Moreira et al.,
arXiv:2407.15831): a candidate whose guide similarity to the query exceeds the positive's minus a margin is more
likely an unlabelled positive than a negative, so it leaves the denominator.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.gradcache import _create_minibatch
from sentence_transformers.util import batch_to_device
from torch import Tensor

TIE_TOLERANCE = 1e-6
"""Similarities this close to the threshold count as reaching it (an exact copy of the positive, float noise)."""


class GuideModel:
    """Embed the training batch with a frozen model and mark candidates above the positive's similarity - margin.

    Args:
        model: The model being trained (its tokenizer produced the batch).
        guide: The guide; ``None`` uses a frozen copy of ``model`` as it is now (the base model at build time).
        margin: How far below the positive's guide similarity a candidate may score and stay a negative.
        strategy: ``"absolute"``: drop if ``sim >= pos - margin``; ``"relative"``: drop if
            ``sim >= pos - |pos| * margin`` (``pos * (1 - margin)`` for a positive ``pos``).

    Raises:
        ValueError: on an unknown strategy or a negative margin.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        guide: SentenceTransformer | None = None,
        margin: float = 0.0,
        strategy: str = "absolute",
    ) -> None:
        if strategy not in ("absolute", "relative"):
            raise ValueError(f"strategy must be 'absolute' or 'relative', got {strategy!r}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.guide = copy.deepcopy(model) if guide is None else guide
        self.guide.eval()
        self.guide.requires_grad_(False)
        self.margin = margin
        self.strategy = strategy
        self._source_tokenizer = model.tokenizer
        self.must_retokenize = guide is not None and (
            model.tokenizer.get_vocab() != self.guide.tokenizer.get_vocab()
            or self.guide.max_seq_length < model.max_seq_length
        )
        self._last: tuple[tuple[Tensor, ...], list[Tensor]] | None = None

    def embed(
        self, sentence_features: Sequence[dict[str, Tensor]], mini_batch_size: int | None = None
    ) -> list[Tensor]:
        """Guide embeddings of each column, without gradients.

        The last result is reused when called again on the same feature dicts (MatryoshkaLoss calls the loss once per
        dimension on the same batch).

        Args:
            sentence_features: The batch's tokenised columns (not modified).
            mini_batch_size: Embed this many texts at a time (bounds memory under gradient caching); ``None`` embeds
                each column at once.

        Returns:
            One ``(batch, guide_dim)`` tensor per column.
        """
        key = tuple(features["input_ids"] for features in sentence_features)  # kept alive: identity stays unique
        if self._last is not None and len(self._last[0]) == len(key):
            if all(old is new for old, new in zip(self._last[0], key, strict=True)):
                return self._last[1]
        with torch.no_grad():
            embeddings = [self._embed_column(column, mini_batch_size) for column in sentence_features]
        self._last = (key, embeddings)
        return embeddings

    def _embed_column(self, column: dict[str, Tensor], mini_batch_size: int | None) -> Tensor:
        if not self.must_retokenize and self.guide.device != column["input_ids"].device:
            self.guide.to(column["input_ids"].device)  # the trainer moved the batch (and the model) to its device
        size = column["input_ids"].size(0)
        step = mini_batch_size or size
        chunks = [_create_minibatch(column, begin, begin + step) for begin in range(0, size, step)]
        embedded = [self.guide(self._guide_features(chunk))["sentence_embedding"] for chunk in chunks]
        return torch.cat(embedded).detach()

    def _guide_features(self, column: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self.must_retokenize:
            return dict(column)  # a shallow copy: the model writes its outputs into the dict it is given
        texts = self._source_tokenizer.batch_decode(column["input_ids"], skip_special_tokens=True)
        return batch_to_device(self.guide.preprocess(texts), self.guide.device)

    def mask(self, similarities: Tensor, positive_similarity: Tensor) -> Tensor:
        """Mark candidates whose guide similarity is too close to the positive's.

        Args:
            similarities: ``(batch, candidates)`` guide cosine similarities of each query to each candidate.
            positive_similarity: ``(batch,)`` guide similarity of each query to its own positive.

        Returns:
            ``(batch, candidates)`` bool, True where the candidate scores at or above the threshold (ties within
            :data:`TIE_TOLERANCE` count, so an exact copy of the positive is dropped at margin 0): it leaves the
            denominator. The relative margin is taken from ``|pos|`` so the threshold stays below a negative ``pos``.
        """
        positive = positive_similarity.unsqueeze(1)
        margin = self.margin if self.strategy == "absolute" else positive.abs() * self.margin
        return similarities >= positive - margin - TIE_TOLERANCE
