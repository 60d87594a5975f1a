"""Search benchmark: exact (faiss IndexFlatIP) vs approximate (HNSW, IVF) search over synthetic 384-d unit vectors.

For every corpus size (default 100,000 and 1,000,000 documents) and index kind, with embedtune's default settings
(``embedtune.search.vectors``): build time, size of the saved ``index.faiss``, single-query latency p50/p99 over
1,000 queries (one query per ``search`` call, top 10, as ``embedtune search`` and ``Retriever.search`` do) and
Recall@10 of the approximate indexes against the exact one (the share of the exact top 10 they return).

The vectors are clustered like real embeddings (documents and queries scattered around shared topic centres, one
centre per 1,000 documents, cosine to their centre about 0.7); ``--uniform`` draws them uniformly on the sphere
instead, the worst case for approximate search (all neighbours nearly equidistant).

Latencies need an otherwise idle machine: beside another busy process, faiss's OpenMP threads wait on each other and
single-query p50/p99 grow tenfold; ``--threads 1`` gives steadier figures there.

    .venv/bin/python bench/search.py                            # 100k and 1M, rows appended to docs/benchmarks.md
    .venv/bin/python bench/search.py --sizes 20000 --no-record
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
KINDS = ("exact", "hnsw", "ivf")
DOCS_PER_CLUSTER = 1000
CHUNK_ROWS = 100_000


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Scale every row of a float32 ``(n, dim)`` matrix to unit length, in place; returns it."""
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def synthetic(count: int, centres: np.ndarray | None, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, dim)`` float32 unit vectors: around random ``centres`` (noise norm 1), or uniform when None."""
    out = np.empty((count, dim), np.float32)
    for start in range(0, count, CHUNK_ROWS):
        rows = min(CHUNK_ROWS, count - start)
        noise = rng.standard_normal((rows, dim), dtype=np.float32)
        if centres is None:
            out[start : start + rows] = noise
        else:
            chosen = centres[rng.integers(len(centres), size=rows)]
            out[start : start + rows] = chosen + noise / np.sqrt(dim, dtype=np.float32)
    return unit_rows(out)


def latencies_ms(index, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search one query per call; return the per-call latencies in ms ``(m,)`` and the results ``(m, top_k)``."""
    times = np.empty(len(queries))
    found = np.empty((len(queries), top_k), np.int64)
    for row in range(len(queries)):
        started = time.perf_counter()
        _, positions = index.search(queries[row : row + 1], top_k)
        times[row] = (time.perf_counter() - started) * 1000
        found[row] = positions[0]
    return times, found


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each exact top-k found by the approximate index."""
    k = truth.shape[1]
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found, strict=True)]))


def describe(settings: dict) -> str:
    names = {"m": "M", "ef_construction": "efConstruction", "ef_search": "efSearch"}
    return ", ".join(f"{names.get(key, key)}={value}" for key, value in settings.items() if key != "kind")


def run_size(count: int, args: argparse.Namespace) -> list[dict]:
    """Generate one corpus and measure every index kind on it."""
    import faiss

    from embedtune.search.vectors import create_vector_index

    rng = np.random.default_rng(args.seed)
    centres = None if args.uniform else unit_rows(rng.standard_normal((max(1, count // DOCS_PER_CLUSTER), args.dim)))
    centres = None if centres is None else centres.astype(np.float32)
    started = time.perf_counter()
    documents = synthetic(count, centres, args.dim, rng)
    queries = synthetic(args.queries, centres, args.dim, rng)
    print(f"{count:,} documents generated in {time.perf_counter() - started:.1f} s", flush=True)
    rows, truth = [], None
    for kind in ["exact", *(k for k in args.kinds if k != "exact")]:
        started = time.perf_counter()
        index, settings = create_vector_index(documents, kind)
        build_s = time.perf_counter() - started
        size_mib = len(faiss.serialize_index(index)) / 2**20
        if truth is None:  # exact: the ground truth, searched in one batch
            truth = index.search(queries, args.top_k)[1]
        times, found = latencies_ms(index, queries, args.top_k)
        row = {
            "documents": count,
            "kind": kind,
            "settings": describe(settings),
            "build_s": build_s,
            "size_mib": size_mib,
            "p50_ms": float(np.percentile(times, 50)),
            "p99_ms": float(np.percentile(times, 99)),
            "recall": recall(truth, found),
        }
        if kind in args.kinds:
            rows.append(row)
            print(format_row(row), flush=True)
        del index
        gc.collect()
    return rows


HEADER = f"{'documents':>10}  {'index':<6}{'build s':>9}{'MiB':>8}{'p50 ms':>9}{'p99 ms':>9}{'R@10':>8}  settings"


def format_row(row: dict) -> str:
    return (
        f"{row['documents']:>10,}  {row['kind']:<6}{row['build_s']:>9.1f}{row['size_mib']:>8.0f}{row['p50_ms']:>9.3f}"
        f"{row['p99_ms']:>9.3f}{row['recall']:>8.4f}  {row['settings']}"
    )


def append_markdown(rows: list[dict], args: argparse.Namespace, threads: int) -> None:
    import faiss

    from embedtune.runs.folder import git_commit

    full_commit = git_commit(ROOT) or "unknown"
    commit = full_commit[:12] + ("+dirty" if full_commit.endswith("+dirty") else "")
    data = "uniform on the sphere" if args.uniform else f"clustered, one centre per {DOCS_PER_CLUSTER:,} documents"
    lines = [
        "",
        f"### bench/search.py ({date.today()}, commit {commit})",
        "",
        f"Synthetic {args.dim}-d unit vectors ({data}), {args.queries:,} single-query searches, top {args.top_k}, "
        f"faiss {faiss.__version__} on {threads} threads; Recall@{args.top_k} against the exact index.",
        "",
        f"| documents | index | settings | build s | index MiB | p50 ms | p99 ms | Recall@{args.top_k} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['documents']:,} | {r['kind']} | {r['settings'] or '-'} | {r['build_s']:.1f} | {r['size_mib']:.0f} | "
        f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['recall']:.4f} |"
        for r in rows
    ]
    with BENCHMARKS_MD.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="Corpus sizes.")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="Index kinds to measure.")
    parser.add_argument("--queries", type=int, default=1000, help="Single-query searches timed per index.")
    parser.add_argument("--dim", type=int, default=384, help="Embedding dimension.")
    parser.add_argument("--top-k", type=int, default=10, help="Results per query (Recall@k).")
    parser.add_argument("--uniform", action="store_true", help="Uniform random unit vectors instead of clusters.")
    parser.add_argument("--threads", type=int, help="faiss OpenMP threads (default: all cores).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    args = parser.parse_args()
    if min(args.sizes) < 1 or args.queries < 1 or args.dim < 1 or args.top_k < 1:
        parser.error("--sizes, --queries, --dim and --top-k must be positive")
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    threads = faiss.omp_get_max_threads()
    print(f"faiss {faiss.__version__}, {threads} threads; {HEADER.strip()}", flush=True)
    rows = [row for count in args.sizes for row in run_size(count, args)]
    print("\n" + HEADER + "\n" + "\n".join(format_row(row) for row in rows))
    if not args.no_record:
        append_markdown(rows, args, threads)


if __name__ == "__main__":
    main()
