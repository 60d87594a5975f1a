"""On-disk cache of query and document embeddings of unchanged models (``embedtune eval``, the final comparison).

Use :class:`EmbeddingCache` directly (``cache.get_or_encode(model, texts, "document", encode_fn)``) or pass one as
``cache=`` to :func:`embedtune.search.retrieve.encode_queries`, :func:`~embedtune.search.retrieve.encode_documents` or
:class:`embedtune.evaluation.retrieval_evaluator.RetrievalEvaluator`. Entries are keyed by the exact
:func:`model_fingerprint` (weights and encoding settings), the role and the SHA-256 of the text.
"""

from embedtune.cache.chunks import CorruptChunkError
from embedtune.cache.disk import CACHE_DIR_ENV, default_cache_dir
from embedtune.cache.fingerprint import fingerprint_settings, forget_fingerprint, model_fingerprint
from embedtune.cache.store import DEFAULT_MAX_BYTES, EmbeddingCache

__all__ = [
    "CACHE_DIR_ENV",
    "DEFAULT_MAX_BYTES",
    "CorruptChunkError",
    "EmbeddingCache",
    "default_cache_dir",
    "fingerprint_settings",
    "forget_fingerprint",
    "model_fingerprint",
]
