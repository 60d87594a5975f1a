"""Check an export against the PyTorch model before it is written: same embeddings, same ranking quality.

Both models encode every query and document of a check split (the run's dev split, the selection split): the
cosine between the two embeddings of each text is the closeness figure, and both rankings are scored by nDCG@10
under the same rule (the whole corpus, or the same subsample of it). An export passes when the mean cosine reaches
:data:`MIN_COSINE` and its nDCG@10 is at most :data:`MAX_NDCG_DROP` below PyTorch's, per quantisation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers import SentenceTransformer

from embedtune.evaluation.metrics import evaluate_run
from embedtune.search.retrieve import encode_documents, encode_queries, rank

if TYPE_CHECKING:
    from embedtune.cache import EmbeddingCache
    from embedtune.data.types import EvalSplit

MIN_COSINE = {"none": 0.999, "int8": 0.99}
"""Lowest mean cosine between the export's and PyTorch's embeddings, per quantisation."""
MAX_NDCG_DROP = {"none": 0.002, "int8": 0.01}
"""Largest nDCG@10 the export may lose against PyTorch on the check split, per quantisation."""
METRIC = "ndcg@10"


@dataclass(frozen=True)
class ExportCheck:
    """The figures of one export check.

    Attributes:
        split: The check split's name.
        queries: Judged queries ranked.
        documents: Documents ranked per query (the corpus or its subsample).
        cosine_mean: Mean cosine, PyTorch vs export, over every query and document embedding.
        cosine_min: The lowest of those cosines.
        ndcg_pytorch: nDCG@10 of the PyTorch model (fp32).
        ndcg_export: nDCG@10 of the export.
        min_cosine: The threshold applied to ``cosine_mean``.
        max_ndcg_drop: The largest drop of nDCG@10 allowed.
        export_docs_per_s: Documents encoded per second by the export during the check.
    """

    split: str
    queries: int
    documents: int
    cosine_mean: float
    cosine_min: float
    ndcg_pytorch: float
    ndcg_export: float
    min_cosine: float
    max_ndcg_drop: float
    export_docs_per_s: float

    @property
    def ndcg_drop(self) -> float:
        """How much nDCG@10 the export loses (negative when it gains)."""
        return self.ndcg_pytorch - self.ndcg_export

    @property
    def passed(self) -> bool:
        """Whether the export is close enough to PyTorch on both figures."""
        return self.cosine_mean >= self.min_cosine and self.ndcg_drop <= self.max_ndcg_drop

    def summary(self) -> str:
        """One line: both figures against their thresholds."""
        return (
            f"on {self.split} ({self.queries} queries, {self.documents} documents): mean cosine to PyTorch "
            f"{self.cosine_mean:.4f} (lowest {self.cosine_min:.4f}; needs >= {self.min_cosine}), nDCG@10 "
            f"{self.ndcg_export:.4f} vs PyTorch {self.ndcg_pytorch:.4f} (drop {self.ndcg_drop:+.4f}; allowed "
            f"<= {self.max_ndcg_drop})"
        )

    def record(self) -> dict[str, Any]:
        """JSON-ready figures, with ``passed``."""
        return {**asdict(self), "ndcg_drop": self.ndcg_drop, "passed": self.passed}


def check_export(
    reference: SentenceTransformer,
    exported: SentenceTransformer,
    split: EvalSplit,
    quantization: str,
    batch_size: int | None = None,
    cache: EmbeddingCache | None = None,
) -> ExportCheck:
    """Encode ``split`` with both models and compare (see the module docstring).

    Args:
        reference: The PyTorch model, encoded in fp32 (through ``cache`` when given).
        exported: The export, loaded for running (e.g. :func:`embedtune.models.onnx_backend.load_onnx_model`).
        split: The check split: corpus, queries and qrels.
        quantization: ``"none"`` or ``"int8"``: which thresholds apply.
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        cache: Embedding cache for the PyTorch model's embeddings; ``None`` encodes them.

    Returns:
        The figures; :attr:`ExportCheck.passed` tells the verdict.

    Raises:
        ValueError: for an unknown quantisation or a split without judged queries.
    """
    if quantization not in MIN_COSINE:
        raise ValueError(f"quantization must be one of {', '.join(MIN_COSINE)}, got {quantization!r}")
    query_ids = [query_id for query_id in split.qrels if query_id in split.queries]
    if not query_ids:
        raise ValueError(f"the check split {split.name} has no judged query")
    doc_ids = list(split.corpus)
    query_texts, doc_texts = [split.queries[q] for q in query_ids], [split.corpus[d] for d in doc_ids]
    figures: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    seconds = 0.0
    for label, model, model_cache in (("pytorch", reference, cache), ("export", exported, None)):
        start = time.perf_counter()
        documents = encode_documents(model, doc_texts, batch_size, False, model_cache)  # (docs, dim)
        seconds = time.perf_counter() - start
        queries = encode_queries(model, query_texts, batch_size, False, model_cache)  # (queries, dim)
        figures[label] = (queries, documents)
    ndcg = {}
    for label, (queries, documents) in figures.items():
        run = rank(queries, documents, query_ids, doc_ids, 10, reference.similarity)
        ndcg[label] = evaluate_run(split.qrels, run, [METRIC])[METRIC]
    cosines = torch.cat(
        [
            torch.nn.functional.cosine_similarity(figures["pytorch"][part], figures["export"][part], dim=1)
            for part in (0, 1)
        ]
    )
    return ExportCheck(
        split=split.name,
        queries=len(query_ids),
        documents=len(doc_ids),
        cosine_mean=float(cosines.mean()),
        cosine_min=float(cosines.min()),
        ndcg_pytorch=ndcg["pytorch"],
        ndcg_export=ndcg["export"],
        min_cosine=MIN_COSINE[quantization],
        max_ndcg_drop=MAX_NDCG_DROP[quantization],
        export_docs_per_s=len(doc_texts) / max(seconds, 1e-9),
    )
