"""The on-disk embedding cache: embeddings of unchanged models, keyed by (model fingerprint, role, text hash).

Chunk files (:mod:`embedtune.cache.chunks`) hold one batch of texts encoded together (at most :data:`CHUNK_ROWS`
rows) under ``<root>/<fingerprint>/<role>/`` (:mod:`embedtune.cache.disk`). A chunk's modification time is its last
use; when the chunk files pass the size cap, the least recently used are deleted. Every failure to read or write the
cache is logged and the texts are encoded instead: the cache can make an evaluation faster, never wrong and never
make it fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedtune.cache.chunks import (
    DIGEST_BYTES,
    CorruptChunkError,
    chunk_name,
    read_chunk,
    read_chunk_digests,
    text_digest,
    write_chunk,
)
from embedtune.cache.disk import (
    ROLES,
    chunks_by_last_use,
    clear_cache,
    default_cache_dir,
    describe_cache,
    evict_least_recently_used,
    touch,
    write_model_file,
)
from embedtune.cache.fingerprint import model_fingerprint
from embedtune.models.head import split_head
from embedtune.models.precision import inference_autocast

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Default size cap of the chunk files: 2 GiB."""
CHUNK_ROWS = 16_384
"""Most rows per chunk file (16k x 384 float32 = 25 MB), so that eviction frees space in pieces."""
EncodeFn = Callable[[list[str]], Any]


class EmbeddingCache:
    """Embeddings on disk, reused while the model (weights and encoding settings) is unchanged.

    Args:
        root: Cache folder (created on first write); ``None`` uses :func:`default_cache_dir`.
        max_bytes: Size cap of the chunk files in bytes; ``None`` is :data:`DEFAULT_MAX_BYTES`; ``0`` stores nothing.

    Raises:
        ValueError: if ``max_bytes`` is negative.

    Several processes may share one root: chunks are written atomically under content-derived names, and a chunk
    that vanishes (evicted by another process) or fails its checks is simply encoded again.
    """

    def __init__(self, root: str | Path | None = None, max_bytes: int | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
        if self.max_bytes < 0:
            raise ValueError(f"the embedding cache size cap must be >= 0 bytes, got {max_bytes}")

    @classmethod
    def from_settings(cls, cache_dir: str | None, cache_max_gb: float) -> EmbeddingCache | None:
        """Build the cache from ``eval.cache_dir`` / ``eval.cache_max_gb``-style settings.

        Args:
            cache_dir: Root folder, or ``None`` for :func:`default_cache_dir`.
            cache_max_gb: Size cap in GiB (2**30 bytes); ``0`` disables the cache.

        Returns:
            The cache, or ``None`` when ``cache_max_gb`` is 0.

        Raises:
            ValueError: if ``cache_max_gb`` is negative.
        """
        if cache_max_gb == 0:
            return None
        if cache_max_gb < 0:
            raise ValueError(f"the embedding cache size must be >= 0 GiB, got {cache_max_gb}")
        return cls(cache_dir, int(cache_max_gb * 1024**3))

    def get_or_encode(self, model: Any, texts: Sequence[str], role: str, encode_fn: EncodeFn) -> torch.Tensor:
        """Return the embeddings of ``texts``, reading cached rows and encoding only the others.

        Args:
            model: The model ``encode_fn`` encodes with; its :func:`~embedtune.cache.fingerprint.model_fingerprint`
                keys the entries (a model it cannot fingerprint bypasses the cache, with a warning).
            texts: ``n`` texts.
            role: ``"query"`` or ``"document"`` (the same text may embed differently in each role).
            encode_fn: ``texts -> (len(texts), dim)`` float tensor or array. Called once, with the distinct missing
                texts in their order of first appearance; not called when every text is cached. With no text, it is
                called with ``[]`` and its result returned as is. (Only when cached rows prove to have another
                dimension than fresh ones, possible for a model that does not report its dimension, are those rows
                deleted and every text encoded in a second call.)

        Returns:
            ``(n, dim)`` float32 CPU tensor, row ``i`` embedding ``texts[i]``; rows encoded by this call are
            bit-identical to what ``encode_fn`` returned.

        Raises:
            ValueError: if ``role`` is not ``"query"`` or ``"document"``, or ``encode_fn`` returns a wrong shape.
            TypeError: if a text is not a string.
        """
        if role not in ROLES:
            raise ValueError(f"role must be 'query' or 'document', got {role!r}")
        texts = list(texts)
        if not texts:
            return encode_fn([])
        digests = [text_digest(text) for text in texts]
        try:
            fingerprint = model_fingerprint(model)
        except ValueError as error:
            logger.warning("Embedding cache not used: %s", error)
            return encode_fn(texts)
        first = {}  # digest -> position of its first occurrence
        for position, digest in enumerate(digests):
            first.setdefault(digest, position)
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        found, dim = self._lookup(fingerprint, role, set(first), dim)
        missing = [digest for digest in first if digest not in found]
        fresh = None
        if missing:
            fresh = _as_matrix(encode_fn([texts[first[digest]] for digest in missing]), len(missing))
            if dim is not None and fresh.shape[1] != dim and found:
                message = "Embedding cache: cached %s rows are %d-dimensional, fresh ones %d; encoding all again"
                logger.warning(message, role, dim, fresh.shape[1])
                self._delete_fingerprint_role(fingerprint, role)
                return self.get_or_encode(model, texts, role, encode_fn)
            dim = fresh.shape[1]
            self._store(model, fingerprint, role, b"".join(missing), fresh)
        result = np.empty((len(texts), dim), dtype=np.float32)
        sources: dict[int, tuple[np.ndarray, list[int], list[int]]] = {}
        fresh_row = {digest: row for row, digest in enumerate(missing)}
        for position, digest in enumerate(digests):
            matrix, row = found[digest] if digest in found else (fresh, fresh_row[digest])
            entry = sources.setdefault(id(matrix), (matrix, [], []))
            entry[1].append(position)
            entry[2].append(row)
        for matrix, positions, rows in sources.values():
            result[positions] = matrix[rows]
        return torch.from_numpy(result)

    def info(self) -> dict[str, Any]:
        """Describe the cache (reads chunk headers only).

        Returns:
            ``{"root": str, "max_bytes": int, "bytes": int (chunk files), "chunks": int, "entries": int (cached
            embeddings), "fingerprints": int, "corrupt": int (chunks failing their header checks), "models": [{
            "fingerprint", "source" (what the model was loaded from, or None), "entries": {"query": int, "document":
            int}, "bytes": int, "last_used": ISO-8601 UTC}]}``, models most recently used first.
        """
        return describe_cache(self.root, self.max_bytes)

    def clear(self) -> dict[str, int]:
        """Delete every chunk, leftover temporary file and ``model.json`` of the cache, and their empty folders.

        Files the cache did not write are left alone (the root itself is kept).

        Returns:
            ``{"files": files deleted, "bytes": their total size}``.
        """
        return clear_cache(self.root)

    def adopt(self, other: EmbeddingCache, model: Any, precision: str = "fp32") -> int:
        """Copy ``model``'s embeddings from another cache into this one, e.g. from a run's scratch cache once it ships.

        A run encodes its fine-tuned candidates through a scratch cache (most are never seen again); the one it ships
        is evaluated, mined with as a teacher and indexed later, so its embeddings are worth keeping. Rows this cache
        already holds are copied again under the same content-derived chunk names (no duplicate rows).

        Args:
            other: The cache to read from (left unchanged).
            model: The model whose :func:`~embedtune.cache.fingerprint.model_fingerprint` keys the entries (for a
                model ending in a head, its encoder part's: :func:`~embedtune.models.head.split_head`).
            precision: The precision the model encoded at (``eval.precision``: ``fp32``, ``bf16``, ``fp16`` or
                ``auto``, as :func:`~embedtune.models.precision.inference_autocast` applies it on the model's
                device): the fingerprint records the autocast in force.

        Returns:
            Rows copied (0 when ``other`` has none for the model, or it cannot be fingerprinted). Failures to read
            or write are logged, never raised.
        """
        model, _ = split_head(model)  # a model ending in a head caches its encoder part's embeddings
        try:
            with inference_autocast(precision, getattr(model, "device", None) or "cpu"):
                fingerprint = model_fingerprint(model)
        except ValueError:
            return 0
        copied = 0
        for role in ROLES:
            for path in chunks_by_last_use(other.root / fingerprint / role):
                try:
                    _, digests, matrix = read_chunk(path, fingerprint, role)
                except (OSError, CorruptChunkError) as error:
                    logger.warning("Embedding cache: cannot adopt %s: %s", path, error)
                    continue
                self._store(model, fingerprint, role, digests, matrix)
                copied += len(matrix)
        return copied

    def evict(self) -> int:
        """Delete least recently used chunks until the chunk files fit :attr:`max_bytes`; drop stale temp files.

        Returns:
            Bytes freed.
        """
        return evict_least_recently_used(self.root, self.max_bytes)

    def _lookup(
        self, fingerprint: str, role: str, wanted: set[bytes], dim: int | None
    ) -> tuple[dict[bytes, tuple[np.ndarray, int]], int | None]:
        """Find cached rows: digest -> (verified matrix, row); chunks that fail a check are deleted."""
        found: dict[bytes, tuple[np.ndarray, int]] = {}
        folder = self.root / fingerprint / role
        for path in chunks_by_last_use(folder):
            if len(found) == len(wanted):
                break
            try:
                header, digests = read_chunk_digests(path, fingerprint, role)
                if not any(digest in wanted and digest not in found for digest in _split(digests)):
                    continue
                header, digests, matrix = read_chunk(path, fingerprint, role)
                if dim is not None and header.dim != dim:
                    raise CorruptChunkError(f"{path}: {header.dim}-dimensional rows, the model gives {dim}")
                dim = header.dim
                for row, digest in enumerate(_split(digests)):
                    if digest in wanted:
                        found.setdefault(digest, (matrix, row))
                touch(path)
            except FileNotFoundError:
                continue
            except CorruptChunkError as error:
                logger.warning("Embedding cache: %s; deleting it, its texts are encoded again", error)
                path.unlink(missing_ok=True)
            except OSError as error:
                logger.warning("Embedding cache: cannot read %s: %s", path, error)
        return found, dim

    def _store(self, model: Any, fingerprint: str, role: str, digests: bytes, matrix: np.ndarray) -> None:
        """Write the freshly encoded rows as chunks, then evict down to the cap; failures are only logged."""
        folder = self.root / fingerprint / role
        stored = False
        try:
            for start in range(0, len(matrix), CHUNK_ROWS):
                part = digests[start * DIGEST_BYTES : (start + CHUNK_ROWS) * DIGEST_BYTES]
                rows = matrix[start : start + CHUNK_ROWS]
                if len(part) + rows.nbytes > self.max_bytes:
                    logger.info("Embedding cache: %d %s embeddings exceed the size cap; not stored", len(rows), role)
                    continue
                write_chunk(folder / chunk_name(part), fingerprint, role, part, rows)
                touch(folder / chunk_name(part))
                stored = True
            if stored:
                write_model_file(self.root / fingerprint, model, fingerprint)
                self.evict()
        except OSError as error:
            logger.warning("Embedding cache: cannot write under %s: %s", self.root, error)

    def _delete_fingerprint_role(self, fingerprint: str, role: str) -> None:
        for path in chunks_by_last_use(self.root / fingerprint / role):
            path.unlink(missing_ok=True)


def _as_matrix(embeddings: Any, rows: int) -> np.ndarray:
    matrix = torch.as_tensor(embeddings).detach().to("cpu", torch.float32).numpy()
    if matrix.ndim != 2 or matrix.shape[0] != rows:
        raise ValueError(f"the encoder returned shape {tuple(matrix.shape)} for {rows} texts, expected ({rows}, dim)")
    return matrix


def _split(digests: bytes) -> Iterator[bytes]:
    return (digests[start : start + DIGEST_BYTES] for start in range(0, len(digests), DIGEST_BYTES))
