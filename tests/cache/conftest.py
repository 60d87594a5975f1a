"""Fixtures of the embedding-cache tests: a fresh copy of the tiny model per test, a cache in a temp folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def restore_root_logging():
    """Undo ``embedtune.cli.main``'s console handler, bound to a captured stderr that pytest closes after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture()
def model(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_dir), device="cpu")


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch) -> Path:
    """A cache root in the test's temp folder, also set as $EMBEDTUNE_CACHE_DIR so nothing reaches ~/.cache."""
    root = tmp_path / "embedding-cache"
    monkeypatch.setenv("EMBEDTUNE_CACHE_DIR", str(root))
    return root


class CountingEncoder:
    """An ``encode_fn`` that records every call (the texts it was asked to encode) and delegates to the model."""

    def __init__(self, model, role: str = "document") -> None:
        self.model, self.role = model, role
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]):
        self.calls.append(list(texts))
        encode = self.model.encode_query if self.role == "query" else self.model.encode_document
        return encode(texts, batch_size=8, convert_to_tensor=True, show_progress_bar=False).float().cpu()
