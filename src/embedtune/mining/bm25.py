"""BM25 candidates for mining: a ``bm25s`` index searched one query at a time, with deterministic ties.

:class:`Bm25Index` ranks with ``bm25s`` and its default tokenizer (lower-cased words of two or more characters,
English stop words removed, no stemmer); documents sharing no word with the query (BM25 score 0) are never returned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from embedtune.search.top_k import top_k_rows


def import_bm25s() -> Any:
    """Import ``bm25s`` without letting JAX take the GPU.

    ``bm25s`` imports JAX when it is installed and runs one ``jax.lax.top_k`` at import, which starts JAX's GPU
    backend, and JAX then preallocates 75 % of the GPU's memory for the life of the process (108 GB of an H200,
    measured; parallel test workers then ran out of GPU memory). embedtune ranks BM25 scores itself and never uses
    that JAX path, so unless the user configured JAX, it stays on the CPU and allocates on demand.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # bm25s: imported after the JAX settings above, and only for BM25 mining
    import bm25s

    return bm25s


class Bm25Index:
    """A ``bm25s`` index of a corpus, searched one query at a time with deterministic ties.

    Args:
        texts: The ``n_docs`` document texts, in corpus order (row ``j`` is document ``j``).
    """

    def __init__(self, texts: Sequence[str]) -> None:
        bm25s = import_bm25s()
        self._bm25s = bm25s
        self.num_docs = len(texts)
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(list(texts), show_progress=False), show_progress=False)

    def search(
        self, query: str, depth: int, score_rows: Sequence[int] = ()
    ) -> tuple[list[int], list[float], list[float]]:
        """Rank the corpus for one query by BM25.

        Args:
            query: The query text (tokenised like the corpus).
            depth: Most documents returned.
            score_rows: Documents whose score is also wanted (e.g. the positives), ranked or not.

        Returns:
            ``(rows, scores, row_scores)``: up to ``depth`` document rows with a score > 0, best first (equal scores
            by ascending row), their scores, and the score of every entry of ``score_rows``.
        """
        tokens = self._bm25s.tokenize([query], return_ids=False, show_progress=False)[0]
        ids = self.retriever.get_tokens_ids([token for token in tokens if token])
        if ids:
            scores = torch.from_numpy(np.asarray(self.retriever.get_scores_from_ids(ids), dtype=np.float32))
        else:
            scores = torch.zeros(self.num_docs)
        values, rows = top_k_rows(scores[None], min(depth, self.num_docs))
        kept = values[0] > 0
        row_scores = scores[list(score_rows)].tolist() if score_rows else []
        return rows[0][kept].tolist(), values[0][kept].tolist(), row_scores
