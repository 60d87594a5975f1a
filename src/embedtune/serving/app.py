"""The HTTP API of ``embedtune serve``: search a saved index and embed texts, on FastAPI.

Endpoints (JSON in and out):

==================  ===========================================================================================
``POST /search``    ``{"query": str, "top_k": int}`` -> ``{"hits": [{"id", "score", "text"}]}``, or
                    ``{"queries": [str, ...], "top_k": int}`` -> ``{"results": [[hit, ...], ...]}`` (one list per
                    query, in order); ``top_k`` 1 ... ``max_top_k`` (10 when left out).
``POST /embed``     ``{"texts": [str, ...], "role": "query" | "document"}`` -> ``{"embeddings": [[float]],
                    "dimension": int}``, each text with the model's prompt for its role.
``GET /health``     ``{"status": "ok"}``.
``GET /info``       The model, the index (kind, dimension, similarity, documents) and the request limits.
==================  ===========================================================================================

A request that breaks a rule (a missing or empty query, both ``query`` and ``queries``, ``top_k`` out of range,
more texts than ``max_batch``, an unknown field) gets 422 with FastAPI's ``detail`` list naming the field. With an
API key every request, ``/health`` included, needs ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``), else
401. The model encodes one request at a time (a lock): requests are served concurrently, encodings are not.
"""

from __future__ import annotations

import hmac
import json
import threading
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from embedtune.search.retriever import Retriever, SearchHit
from embedtune.versions import EMBEDTUNE_VERSION

DEFAULT_TOP_K = 10
MAX_TOP_K = 100
"""Largest ``top_k`` a request may ask for, unless ``create_app(max_top_k=...)`` says otherwise."""
MAX_BATCH = 64
"""Most queries in one ``/search`` or texts in one ``/embed`` request, unless ``create_app(max_batch=...)``."""
MAX_TEXT_CHARS = 10_000
"""Longest query or text accepted, in characters (the model truncates far earlier)."""

NonEmptyText = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Strict):
    """Body of ``POST /search``: one ``query`` or a batch of ``queries``, and ``top_k``."""

    query: NonEmptyText | None = None
    queries: list[NonEmptyText] | None = Field(default=None, min_length=1)
    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, strict=True)  # 5, not "5", 5.0 or true

    @model_validator(mode="after")
    def _one_of_query_or_queries(self) -> SearchRequest:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of 'query' (a string) or 'queries' (a list of strings)")
        return self


class EmbedRequest(_Strict):
    """Body of ``POST /embed``: ``texts`` and the ``role`` whose prompt they get."""

    texts: list[NonEmptyText] = Field(min_length=1)
    role: Literal["query", "document"] = "query"


def _hit(hit: SearchHit) -> dict[str, Any]:
    return {"id": hit.id, "score": hit.score, "text": hit.text}


def _limit(name: str, size: int, limit: int) -> None:
    """Refuse a request above a server limit with 422, naming the field, like FastAPI's own validation errors."""
    if size > limit:
        detail = [{"loc": ["body", name], "msg": f"at most {limit} allowed, got {size}", "type": "limit"}]
        raise HTTPException(status_code=422, detail=detail)


async def _validation_error(request: Request, error: Exception) -> Response:
    """Answer a request that fails validation with FastAPI's 422 body, written as ASCII JSON.

    The default handler echoes the offending input as UTF-8, which a lone surrogate (U+D800 sent as a JSON escape)
    cannot be encoded in: the client got a 500. ASCII JSON escapes it again.
    """
    errors = error.errors() if isinstance(error, RequestValidationError) else []
    content = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(content, status_code=422, media_type="application/json")


def create_app(
    retriever: Retriever,
    *,
    api_key: str | None = None,
    max_top_k: int = MAX_TOP_K,
    max_batch: int = MAX_BATCH,
    index_label: str = "",
) -> FastAPI:
    """Build the API around a retriever that holds an index (:meth:`Retriever.load`).

    Args:
        retriever: The model and index to serve.
        api_key: When given, every request must carry it (``Authorization: Bearer`` or ``X-API-Key``), and the
            interactive docs (``/docs``, ``/redoc``, ``/openapi.json``) are not served.
        max_top_k: Largest ``top_k`` a search may ask for.
        max_batch: Most queries (``/search``) or texts (``/embed``) per request.
        index_label: How ``/info`` names the index (its folder).

    Returns:
        The FastAPI application (serve it with uvicorn).

    Raises:
        RuntimeError: if the retriever holds no index.
        ValueError: if a limit is below 1.
    """
    index = retriever.search_index
    if index is None:
        raise RuntimeError("the retriever holds no index: open one with Retriever.load(index_dir)")
    if max_top_k < 1 or max_batch < 1:
        raise ValueError(f"max_top_k and max_batch must be at least 1, got {max_top_k} and {max_batch}")
    encoding = threading.Lock()  # one forward pass at a time: torch uses every core for each

    def authorised(
        authorization: Annotated[str | None, Header()] = None, x_api_key: Annotated[str | None, Header()] = None
    ) -> None:
        if api_key is None:
            return
        given = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
            challenge = {"WWW-Authenticate": "Bearer"}
            raise HTTPException(status_code=401, detail="missing or wrong API key", headers=challenge)

    # With a key, the interactive docs and the OpenAPI schema are off: FastAPI serves them outside the dependencies.
    open_docs = {} if api_key is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="embedtune serve", version=EMBEDTUNE_VERSION, dependencies=[Depends(authorised)], **open_docs)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        recorded = index.info
        return {
            "model": recorded.model_reference or recorded.model_path,
            "index": index_label,
            "kind": recorded.kind,
            "dimension": recorded.dimension,
            "similarity": recorded.similarity,
            "documents": recorded.count,
            "max_top_k": max_top_k,
            "max_batch": max_batch,
            "embedtune_version": EMBEDTUNE_VERSION,
        }

    @app.post("/search")
    def search(request: SearchRequest) -> dict[str, Any]:
        _limit("top_k", request.top_k, max_top_k)
        queries = [request.query] if request.query is not None else request.queries
        _limit("queries", len(queries), max_batch)
        with encoding:
            results = retriever.batch_search(queries, request.top_k)
        if request.query is not None:
            return {"hits": [_hit(hit) for hit in results[0]]}
        return {"results": [[_hit(hit) for hit in hits] for hits in results]}

    @app.post("/embed")
    def embed(request: EmbedRequest) -> dict[str, Any]:
        _limit("texts", len(request.texts), max_batch)
        encode = retriever.encode_queries if request.role == "query" else retriever.encode_passages
        with encoding:
            embeddings = encode(request.texts)  # (n, dim) float32
        return {"embeddings": embeddings.tolist(), "dimension": int(embeddings.shape[1])}

    return app
