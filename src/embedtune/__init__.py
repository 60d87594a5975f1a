"""embedtune: fine-tune text-embedding models for retrieval, evaluated against the untouched base model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedtune.search.retriever import Retriever

from embedtune.versions import EMBEDTUNE_VERSION as __version__

__all__ = ["Retriever", "__version__"]


def __getattr__(name: str) -> Any:
    """Import ``embedtune.Retriever`` on first use, so that ``import embedtune`` stays light (no torch, no faiss)."""
    if name == "Retriever":
        # torch, faiss: only when embedtune.Retriever is used, so `import embedtune` stays light
        from embedtune.search.retriever import Retriever

        return Retriever
    raise AttributeError(f"module 'embedtune' has no attribute {name!r}")
