"""Serving benchmark: ``embedtune serve`` over a 100,000-document HNSW index, 8 concurrent HTTP clients for 30 s.

The index holds SciFact's 5,183 abstracts encoded by all-MiniLM-L6-v2 (through the embedding cache) plus synthetic
distractors up to ``--documents`` (unit vectors clustered around SciFact's own embeddings, so the HNSW graph is as
dense as a real corpus of that size); the queries are SciFact's test claims. The server runs as its own process
(``embedtune serve INDEX --port P``, as a user starts it) and the clients are threads of this one, on the same CPU.
For single-query and batched ``POST /search`` (``--batch`` queries per request, top 10): requests/s, queries/s,
p50/p99 latency and errors. Needs ``../shared/datasets/scifact``::

    .venv/bin/python bench/serve.py                      # 100,000 documents, 8 clients, 30 s per mode
    .venv/bin/python bench/serve.py --documents 20000 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
MODEL = "all-MiniLM-L6-v2"


def build(out: Path, documents: int, seed: int) -> float:
    """Write the index folder; return its build seconds."""
    from embedtune.cache import EmbeddingCache
    from embedtune.models.loading import load_model
    from embedtune.search.corpus import load_search_corpus
    from embedtune.search.encoding import encode_texts, model_prompts, model_similarity, output_fingerprint
    from embedtune.search.index import SearchIndex, save_index
    from embedtune.search.index_files import IndexInfo
    from embedtune.search.vectors import create_vector_index

    started = time.time()
    model = load_model(MODEL)
    corpus = load_search_corpus(SCIFACT)
    ids, texts = list(corpus), list(corpus.values())
    real = encode_texts(model, texts, "document", 64, False, None, EmbeddingCache.from_settings(None, 2.0))
    rng = np.random.default_rng(seed)
    extra = documents - len(ids)
    centres = real[rng.integers(0, len(real), extra)]
    noise = rng.standard_normal(centres.shape).astype(np.float32) * 0.03
    synthetic = centres + noise
    synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
    embeddings = np.vstack([real, synthetic]).astype(np.float32)  # (documents, 384)
    vectors, parameters = create_vector_index(embeddings, "hnsw", model_similarity(model))
    info = IndexInfo(
        model_reference=MODEL,
        model_path=None,
        dimension=int(embeddings.shape[1]),
        similarity=model_similarity(model),
        kind=parameters.pop("kind"),
        count=documents,
        prompts=model_prompts(model),
        parameters=parameters,
        fingerprint=tuple(output_fingerprint(model)[1]),
        max_seq_length=model.max_seq_length,
        created=datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    all_ids = ids + [f"synthetic-{i}" for i in range(extra)]
    all_texts = texts + [f"synthetic document {i}" for i in range(extra)]
    save_index(SearchIndex(vectors, all_ids, all_texts, info), out)
    return time.time() - started


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(index: Path, port: int) -> subprocess.Popen:
    """Start ``embedtune serve`` and wait until ``/health`` answers."""
    command = [sys.executable, "-m", "embedtune", "-q", "serve", str(index), "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
    server.kill()
    sys.exit("the server did not start within 300 s")


def load(url: str, queries: list[str], batch: int, clients: int, seconds: float) -> dict:
    """Run ``clients`` threads posting searches for ``seconds``; return throughput, latency and errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.time() + seconds

    def client(number: int) -> None:
        rng = np.random.default_rng(number)
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.time() < stop:
                picked = [queries[i] for i in rng.integers(0, len(queries), batch)]
                body = {"query": picked[0], "top_k": 10} if batch == 1 else {"queries": picked, "top_k": 10}
                sent = time.perf_counter()
                try:
                    ok = http.post("/search", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                took = time.perf_counter() - sent
                with lock:
                    latencies.append(took) if ok else None
                    errors[0] += 0 if ok else 1

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ms = np.asarray(latencies) * 1000
    return {
        "batch": batch,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / seconds,
        "queries_per_s": len(latencies) * batch / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": errors[0],
    }


def main() -> None:
    """Build the index, start the server, load it with single and batched searches; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=8, help="Queries per batched request (8).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not SCIFACT.exists():
        sys.exit(f"skipped: {SCIFACT} is missing (see the project README)")
    queries = [json.loads(line)["text"] for line in (SCIFACT / "queries.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as scratch:
        index = Path(scratch) / "index"
        figures = {"documents": args.documents, "clients": args.clients, "seconds": args.seconds}
        figures["build_s"] = build(index, args.documents, args.seed)
        port = free_port()
        server = start_server(index, port)
        try:
            url = f"http://127.0.0.1:{port}"
            figures["modes"] = [load(url, queries, batch, args.clients, args.seconds) for batch in (1, args.batch)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
