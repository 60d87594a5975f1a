from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from embedtune.cache import EmbeddingCache, default_cache_dir, model_fingerprint
from embedtune.cache.chunks import read_chunk, write_chunk
from embedtune.cache.disk import STALE_TEMP_SECONDS
from embedtune.models.precision import inference_autocast
from embedtune.models.prompts import set_prompts
from embedtune.search.retrieve import encode_documents, encode_queries
from tests.cache.conftest import CountingEncoder
from tests.conftest import FRUITS, VEHICLES

DOCS = [f"the {name} is sweet fruit on a tree" for name in FRUITS] + [f"the {name} is fast" for name in VEHICLES]


def chunk_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.emb"))


def test_cached_embeddings_equal_fresh_ones_exactly(model, cache_dir):
    cache = EmbeddingCache(cache_dir)
    fresh_docs = encode_documents(model, DOCS, batch_size=4, progress=False)
    fresh_queries = encode_queries(model, DOCS, batch_size=4, progress=False)
    for _ in range(2):  # the first call stores, the second reads back
        docs = encode_documents(model, DOCS, batch_size=4, progress=False, cache=cache)
        queries = encode_queries(model, DOCS, batch_size=4, progress=False, cache=cache)
        assert docs.dtype == torch.float32 and docs.device.type == "cpu" and docs.shape == (len(DOCS), 32)
        assert torch.equal(docs, fresh_docs) and torch.equal(queries, fresh_queries)
    assert len(chunk_files(cache_dir)) == 2


def test_a_second_encode_calls_the_encoder_zero_times(model, cache_dir):
    cache, encoder = EmbeddingCache(cache_dir), CountingEncoder(model)
    first = cache.get_or_encode(model, DOCS, "document", encoder)
    assert encoder.calls == [DOCS]
    second = cache.get_or_encode(model, DOCS, "document", encoder)
    assert len(encoder.calls) == 1 and torch.equal(first, second)
    reordered = cache.get_or_encode(model, DOCS[::-1], "document", encoder)
    assert len(encoder.calls) == 1 and torch.equal(reordered, first.flip(0))


def test_only_missing_texts_are_encoded_once_each_in_order(model, cache_dir):
    cache, encoder = EmbeddingCache(cache_dir), CountingEncoder(model)
    cache.get_or_encode(model, DOCS[:5], "document", encoder)
    texts = ["new b", DOCS[0], "new a", "new b", DOCS[3]]
    result = cache.get_or_encode(model, texts, "document", encoder)
    assert encoder.calls[1] == ["new b", "new a"]
    assert torch.equal(result[0], result[3])
    expected = encode_documents(model, texts, batch_size=8, progress=False)
    assert torch.allclose(result, expected, atol=1e-5)


def test_roles_are_cached_apart(model, cache_dir):
    cache = EmbeddingCache(cache_dir)
    set_prompts(model, query_prefix="what ", passage_prefix="the ")
    queries = encode_queries(model, DOCS[:3], progress=False, cache=cache)
    documents = encode_documents(model, DOCS[:3], progress=False, cache=cache)
    assert not torch.allclose(queries, documents)
    assert torch.equal(documents, encode_documents(model, DOCS[:3], progress=False))


@pytest.mark.parametrize(
    "change",
    [
        lambda m: next(m.parameters()).data.view(-1)[0].add_(1e-3),
        lambda m: set_prompts(m, passage_prefix="passage: "),
        lambda m: setattr(m, "max_seq_length", 8),
    ],
    ids=["weight", "prompt", "max_seq_length"],
)
def test_a_changed_model_misses(model, cache_dir, change):
    cache, encoder = EmbeddingCache(cache_dir), CountingEncoder(model)
    cache.get_or_encode(model, DOCS, "document", encoder)
    with torch.no_grad():
        change(model)
    result = cache.get_or_encode(model, DOCS, "document", encoder)
    assert encoder.calls == [DOCS, DOCS]
    assert torch.equal(result, encode_documents(model, DOCS, batch_size=8, progress=False))
    assert len({path.parent.parent.name for path in chunk_files(cache_dir)}) == 2


def flip_payload_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def garbage(path: Path) -> None:
    path.write_bytes(b"not a chunk at all")


def wrong_dimension(path: Path) -> None:
    """A well-formed chunk whose rows do not match the model (16 instead of 32 dimensions)."""
    header, digests, matrix = read_chunk(path, path.parent.parent.name, path.parent.name)
    write_chunk(path, header.fingerprint, header.role, digests, np.zeros((header.rows, 16), np.float32))


@pytest.mark.parametrize("damage", [flip_payload_byte, truncate, garbage, wrong_dimension])
def test_a_bad_chunk_is_detected_deleted_and_recomputed(model, cache_dir, damage, caplog):
    cache, encoder = EmbeddingCache(cache_dir), CountingEncoder(model)
    good = cache.get_or_encode(model, DOCS, "document", encoder)
    (path,) = chunk_files(cache_dir)
    damage(path)
    again = cache.get_or_encode(model, DOCS, "document", encoder)
    assert encoder.calls == [DOCS, DOCS] and torch.equal(again, good)
    assert "deleting it" in caplog.text
    (replaced,) = chunk_files(cache_dir)  # replaced by a sound chunk, read without another encode
    assert replaced == path and torch.equal(cache.get_or_encode(model, DOCS, "document", encoder), good)
    assert len(encoder.calls) == 2


def test_a_crash_mid_write_never_leaves_a_readable_bad_entry(model, cache_dir, monkeypatch, caplog):
    cache, encoder = EmbeddingCache(cache_dir), CountingEncoder(model)

    def crash(source, destination):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        result = cache.get_or_encode(model, DOCS, "document", encoder)  # the failed write only logs
    assert "cannot write" in caplog.text
    assert chunk_files(cache_dir) == [] and list(cache_dir.rglob("*.tmp")) == []
    # A process killed mid-write leaves a partial temporary file: never read, eventually swept.
    folder = cache_dir / model_fingerprint(model) / "document"
    folder.mkdir(parents=True, exist_ok=True)
    leftover = folder / ".abc.emb.xyz.tmp"
    leftover.write_bytes(b"partial")
    assert torch.equal(cache.get_or_encode(model, DOCS, "document", encoder), result)
    assert len(encoder.calls) == 2 and leftover.exists()
    old = time.time() - STALE_TEMP_SECONDS - 10
    os.utime(leftover, (old, old))
    cache.evict()
    assert not leftover.exists() and len(chunk_files(cache_dir)) == 1


def test_concurrent_writers_and_readers_never_see_a_torn_chunk(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from embedtune.cache.chunks import CorruptChunkError, text_digest

    fingerprint = "f" * 64
    path = tmp_path / fingerprint / "document" / "chunk.emb"
    digests = b"".join(text_digest(str(i)) for i in range(500))
    matrix = np.random.default_rng(0).standard_normal((500, 64)).astype(np.float32)

    def write(_):
        write_chunk(path, fingerprint, "document", digests, matrix)

    def read(_):
        try:
            _, read_digests, read_matrix = read_chunk(path, fingerprint, "document")
        except FileNotFoundError:
            return True
        except CorruptChunkError:
            return False
        return read_digests == digests and np.array_equal(read_matrix, matrix)

    with ThreadPoolExecutor(8) as pool:
        writes = [pool.submit(write, i) for i in range(40)]
        reads = [pool.submit(read, i) for i in range(200)]
        assert all(future.result() for future in reads)
        [future.result() for future in writes]
    assert [p.name for p in path.parent.iterdir()] == ["chunk.emb"]


def test_eviction_keeps_the_cache_under_its_cap(model, cache_dir):
    probe = EmbeddingCache(cache_dir / "probe")
    probe.get_or_encode(model, [f"text {i}" for i in range(10)], "document", CountingEncoder(model))
    chunk_bytes = probe.info()["bytes"]  # one chunk of 10 texts
    cache = EmbeddingCache(cache_dir / "capped", max_bytes=int(2.5 * chunk_bytes))
    encoder = CountingEncoder(model)
    batches = [[f"batch {b} text {i}" for i in range(10)] for b in range(5)]
    for batch in batches:
        cache.get_or_encode(model, batch, "document", encoder)
        assert cache.info()["bytes"] <= cache.max_bytes
    assert cache.info()["chunks"] == 2
    cache.get_or_encode(model, batches[-1], "document", encoder)  # newest kept
    cache.get_or_encode(model, batches[0], "document", encoder)  # oldest evicted
    assert encoder.calls[-1] == batches[0] and len(encoder.calls) == 6
    cache.get_or_encode(model, batches[-1], "document", encoder)  # still there (recently used)
    assert len(encoder.calls) == 6
    too_big = EmbeddingCache(cache_dir / "tiny", max_bytes=100)
    too_big.get_or_encode(model, batches[0], "document", encoder)
    assert too_big.info()["bytes"] == 0


def test_info_and_clear(model, cache_dir):
    cache = EmbeddingCache(cache_dir)
    encode_documents(model, DOCS, progress=False, cache=cache)
    encode_queries(model, DOCS[:4], progress=False, cache=cache)
    info = cache.info()
    assert info["root"] == str(cache_dir) and info["fingerprints"] == 1 and info["entries"] == len(DOCS) + 4
    assert info["bytes"] == sum(path.stat().st_size for path in chunk_files(cache_dir)) and info["chunks"] == 2
    (entry,) = info["models"]
    assert entry["fingerprint"] == model_fingerprint(model) and entry["entries"] == {"query": 4, "document": 14}
    assert entry["source"] and info["max_bytes"] == 2 * 1024**3
    (cache_dir / "keep.txt").write_text("not the cache's")
    removed = cache.clear()
    assert removed["files"] == 3 and removed["bytes"] >= info["bytes"]
    assert [path.name for path in cache_dir.iterdir()] == ["keep.txt"]
    assert cache.info()["entries"] == 0


def test_defaults_and_bad_arguments(model, cache_dir, monkeypatch):
    assert default_cache_dir() == cache_dir and EmbeddingCache().root == cache_dir
    monkeypatch.delenv("EMBEDTUNE_CACHE_DIR")
    assert default_cache_dir() == Path("~/.cache/embedtune/embeddings").expanduser()
    assert EmbeddingCache.from_settings(None, 0) is None
    assert EmbeddingCache.from_settings(str(cache_dir), 0.5).max_bytes == 2**29
    with pytest.raises(ValueError, match=">= 0"):
        EmbeddingCache(cache_dir, max_bytes=-1)
    cache = EmbeddingCache(cache_dir)
    with pytest.raises(ValueError, match="role"):
        cache.get_or_encode(model, ["a"], "passage", CountingEncoder(model))
    with pytest.raises(ValueError, match="shape"):
        cache.get_or_encode(model, ["a", "b"], "query", lambda texts: torch.zeros(1, 32))
    assert cache.get_or_encode(model, [], "query", lambda texts: torch.zeros(0, 32)).shape == (0, 32)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_adopt_copies_one_models_embeddings_from_another_cache(model, cache_dir, tmp_path, precision):
    scratch, shared = EmbeddingCache(tmp_path / "scratch"), EmbeddingCache(cache_dir)
    other = type(model)(modules=list(model.children()), device="cpu")
    set_prompts(other, passage_prefix="other: ")  # another fingerprint in the same scratch cache
    documents = encode_documents(model, DOCS, progress=False, cache=scratch, precision=precision)
    queries = encode_queries(model, DOCS[:3], progress=False, cache=scratch, precision=precision)
    encode_documents(other, DOCS, progress=False, cache=scratch, precision=precision)

    assert shared.adopt(scratch, model, precision) == len(DOCS) + 3
    assert [entry["entries"] for entry in shared.info()["models"]] == [{"query": 3, "document": len(DOCS)}]
    encoder = CountingEncoder(model)
    with inference_autocast(precision, "cpu"):
        assert torch.equal(shared.get_or_encode(model, DOCS, "document", encoder), documents)
        assert torch.equal(shared.get_or_encode(model, DOCS[:3], "query", CountingEncoder(model, "query")), queries)
    assert encoder.calls == []
    assert len(chunk_files(tmp_path / "scratch")) == 3  # left as it was: two of the model, one of the other
    assert shared.adopt(EmbeddingCache(tmp_path / "empty"), model) == 0
