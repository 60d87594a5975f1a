"""Query and document prompts stored in the model, so that ``encode_query``/``encode_document`` apply them."""

from __future__ import annotations

from sentence_transformers import SentenceTransformer

QUERY_PROMPT = "query"
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
"""Prompt names ``SentenceTransformer.encode_document`` looks for, in its order."""


def set_prompts(model: SentenceTransformer, query_prefix: str = "", passage_prefix: str = "") -> None:
    """Store non-empty prefixes as the model's ``prompts`` (``{"query": ..., "document": ...}``), in place.

    An empty prefix leaves the model's own prompt of that kind (e.g. E5's saved ``"query: "``) untouched. The prompts
    are saved with the model, so ``SentenceTransformer(path).encode_query(texts)`` applies them.

    Args:
        model: The model to change.
        query_prefix: Prepended to every query, e.g. ``"query: "``.
        passage_prefix: Prepended to every document, e.g. ``"passage: "``.
    """
    if query_prefix:
        model.prompts[QUERY_PROMPT] = query_prefix
    if passage_prefix:
        for name in DOCUMENT_PROMPT_NAMES[1:]:
            model.prompts.pop(name, None)
        model.prompts[DOCUMENT_PROMPT_NAMES[0]] = passage_prefix


def query_prompt(model: SentenceTransformer) -> str:
    """Return the text ``encode_query`` prepends to a query (``""`` when the model has no query prompt)."""
    return model.prompts.get(QUERY_PROMPT, "")


def document_prompt(model: SentenceTransformer) -> str:
    """Return the text ``encode_document`` prepends to a document (``""`` when the model has no document prompt)."""
    return next((model.prompts[name] for name in DOCUMENT_PROMPT_NAMES if name in model.prompts), "")
