"""embedtune serve: real HTTP calls to uvicorn on 127.0.0.1 with httpx; bad requests, the API key, many clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from embedtune.cli import main
from embedtune.search.encoding import ModelMismatchError
from embedtune.search.index import build_index
from embedtune.search.retriever import Retriever
from embedtune.serving.app import create_app
from embedtune.serving.server import ServeSettings, build_server_app, is_loopback
from tests.search.test_index import CORPUS, QUERIES
from tests.search.test_retriever import write_perturbed_copy

KEY = "k" * 8 + "-secret-1234"


@pytest.fixture()
def index_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    build_index(str(tiny_model_dir), CORPUS, tmp_path / "idx", progress=False)
    return tmp_path / "idx"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def serve_app() -> Iterator:
    """Start an app on uvicorn in a thread; yield a function app -> base URL; stop every server after the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 30
        while not server.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_search_embed_health_and_info_answer_like_the_retriever(index_dir, serve_app):
    retriever = Retriever.load(index_dir, progress=False)
    url = serve_app(create_app(retriever, index_label=str(index_dir)))
    expected = retriever.batch_search(QUERIES, 3)

    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok"}
        info = client.get("/info").json()
        one = client.post("/search", json={"query": QUERIES[0], "top_k": 3}).json()
        many = client.post("/search", json={"queries": QUERIES, "top_k": 3}).json()
        embedded = client.post("/embed", json={"texts": ["sweet fruit", CORPUS["d0"]], "role": "document"}).json()

    assert info["documents"] == len(CORPUS) and info["dimension"] == retriever.search_index.info.dimension
    assert info["index"] == str(index_dir) and info["similarity"] == "cosine"
    as_rows = [[(hit.id, pytest.approx(hit.score, abs=1e-6), hit.text) for hit in hits] for hits in expected]
    assert [(h["id"], h["score"], h["text"]) for h in one["hits"]] == as_rows[0]
    assert [[(h["id"], h["score"], h["text"]) for h in hits] for hits in many["results"]] == as_rows
    vectors = np.asarray(embedded["embeddings"], dtype=np.float32)
    np.testing.assert_allclose(vectors, retriever.encode_passages(["sweet fruit", CORPUS["d0"]]), atol=1e-6)
    assert embedded["dimension"] == vectors.shape[1]


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/search", {}, "body", "exactly one of 'query'"),
        ("/search", {"query": "a", "queries": ["b"]}, "body", "exactly one of 'query'"),
        ("/search", {"query": "   "}, "query", "pattern"),
        ("/search", {"query": "a", "top_k": 0}, "top_k", "greater than or equal to 1"),
        ("/search", {"query": "a", "top_k": "5"}, "top_k", "valid integer"),
        ("/search", {"query": "a", "top_k": True}, "top_k", "valid integer"),
        ("/search", {"query": "a", "top_k": 2.0}, "top_k", "valid integer"),
        ("/search", {"query": "a", "top_k": 6}, "top_k", "at most 5 allowed, got 6"),
        ("/search", {"queries": ["a", "b", "c"], "top_k": 1}, "queries", "at most 2 allowed, got 3"),
        ("/search", {"queries": []}, "queries", "at least 1 item"),
        ("/search", {"query": "a", "topk": 3}, "topk", "Extra inputs are not permitted"),
        ("/embed", {"texts": ["a"], "role": "passage"}, "role", "'query' or 'document'"),
        ("/embed", {"texts": ["a", "b", "c"]}, "texts", "at most 2 allowed, got 3"),
    ],
)
def test_a_bad_request_gets_422_naming_the_field(index_dir, serve_app, path, body, field, message):
    url = serve_app(create_app(Retriever.load(index_dir, progress=False), max_top_k=5, max_batch=2))

    response = httpx.post(url + path, json=body, timeout=30)

    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"][-1] == field or (field == "body" and problem["loc"] == ["body"])
    assert message in problem["msg"]


def test_a_lone_surrogate_in_a_bad_request_gets_422_not_500(index_dir, serve_app):
    url = serve_app(create_app(Retriever.load(index_dir, progress=False)))
    headers = {"content-type": "application/json"}
    for path, body in [
        ("/search", rb'{"query": "a", "top_k": "\ud800"}'),
        ("/embed", rb'{"texts": ["\ud800"], "role": 1}'),
    ]:
        response = httpx.post(url + path, content=body, headers=headers, timeout=30)
        assert response.status_code == 422, response.text
        assert {"top_k", "texts", "role"} & set(response.json()["detail"][0]["loc"])


def test_malformed_json_is_a_4xx_not_a_crash(index_dir, serve_app):
    url = serve_app(create_app(Retriever.load(index_dir, progress=False)))
    response = httpx.post(url + "/search", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert httpx.get(url + "/health").status_code == 200


def test_with_an_api_key_every_request_needs_it(index_dir, serve_app):
    url = serve_app(create_app(Retriever.load(index_dir, progress=False), api_key=KEY))

    assert httpx.get(url + "/health").status_code == 401
    assert httpx.get(url + "/health", headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401
    assert httpx.post(url + "/search", json={"query": "fruit"}).status_code == 401
    assert httpx.get(url + "/health", headers={"Authorization": f"Bearer {KEY}"}).json() == {"status": "ok"}
    for page in ("/docs", "/redoc", "/openapi.json"):  # FastAPI would serve them outside the key check
        assert httpx.get(url + page, headers={"X-API-Key": KEY}).status_code == 404
    answer = httpx.post(url + "/search", json={"query": "fruit", "top_k": 1}, headers={"X-API-Key": KEY}, timeout=30)
    assert answer.status_code == 200 and len(answer.json()["hits"]) == 1


def test_eight_concurrent_clients_get_the_answers_one_client_gets(index_dir, serve_app):
    retriever = Retriever.load(index_dir, progress=False)
    url = serve_app(create_app(retriever))
    expected = {query: [hit.id for hit in retriever.search(query, 4)] for query in QUERIES}

    def client_loop(number: int) -> list[tuple[str, list[str], int]]:
        with httpx.Client(base_url=url, timeout=60) as client:
            answers = []
            for round_ in range(5):
                query = QUERIES[(number + round_) % len(QUERIES)]
                response = client.post("/search", json={"query": query, "top_k": 4})
                answers.append((query, [hit["id"] for hit in response.json()["hits"]], response.status_code))
            return answers

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = [answer for batch in pool.map(client_loop, range(8)) for answer in batch]

    assert len(answers) == 40
    assert all(status == 200 and ids == expected[query] for query, ids, status in answers)


def test_an_index_built_with_another_model_is_refused_at_start(index_dir, tmp_path, tiny_model_dir):
    other_dir = write_perturbed_copy(tiny_model_dir, tmp_path / "other-model")

    with pytest.raises(ModelMismatchError, match="embeds text differently"):
        build_server_app(ServeSettings(index_dir=index_dir, model=str(other_dir)))


def test_only_loopback_addresses_count_as_local():
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "10.1.2.3", "::", "example.org"))


def test_serve_refuses_a_public_address_without_a_key_before_loading_anything(index_dir, capsys, monkeypatch):
    monkeypatch.setattr("embedtune.search.retriever.Retriever.load", lambda *a, **k: pytest.fail("model loaded"))

    code = main(["serve", str(index_dir), "--host", "0.0.0.0"])

    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: --host 0.0.0.0: other machines could reach it; give --api-key-file FILE (a key of 16 or more "
        "characters, checked on every request) or bind 127.0.0.1"
    ]


def test_a_short_or_empty_key_file_is_one_error_naming_it(index_dir, tmp_path, capsys):
    key_file = tmp_path / "key.txt"
    key_file.write_text("short\n")

    code = main(["serve", str(index_dir), "--host", "0.0.0.0", "--api-key-file", str(key_file)])

    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {key_file}: line 1: the API key must be at least 16 characters, got 5"
    )


def test_a_missing_index_is_one_error_before_the_model_loads(tmp_path, capsys):
    code = main(["serve", str(tmp_path / "nope")])
    assert code == 2
    assert "nope" in capsys.readouterr().err


def test_an_address_in_use_is_one_error_before_the_model_loads(index_dir, capsys, monkeypatch):
    monkeypatch.setattr("embedtune.search.retriever.Retriever.load", lambda *a, **k: pytest.fail("model loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(index_dir), "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)"
    ]
