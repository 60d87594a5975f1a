"""ONNX export benchmark: SciFact corpus encoding with PyTorch fp32 and bf16, and ONNX fp32 and int8.

all-MiniLM-L6-v2 is exported twice with ``embedtune.export.onnx_export``, fp32 and int8 (fused attention, the
default), each checked against PyTorch as ``embedtune export --format onnx`` checks a run's export (the check split
here is 100 SciFact *train* claims over 1,000 documents, never test). Then, side by side in this process, each set-up
encodes the corpus (after a 64-document warm-up) and the 300 test claims: documents/s, and test nDCG@10 with the
paired randomisation test against PyTorch fp32. The set-ups: PyTorch fp32 in batches of ``--batch-size`` and of 8
(so that the ONNX runs' slices are not credited with a gain PyTorch would get from small batches too), PyTorch bf16
autocast, ONNX fp32, and ONNX int8 run in whole batches and in slices of ``TOKENS_PER_RUN`` tokens (the default).
With ``--rounds N`` the set-ups take turns N times and each reports its median speed (this machine's speed drifts by
10-20 % over minutes). Needs ``../shared/datasets/scifact``::

    .venv/bin/python bench/export.py                    # the whole corpus (5,183 abstracts), ~16 min on 2 cores
    .venv/bin/python bench/export.py --rounds 2 --out export.json
    .venv/bin/python bench/export.py --docs 1000        # the judged test documents plus a seeded sample
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

from embedtune.data.beir import load_beir
from embedtune.data.types import EvalSplit
from embedtune.evaluation.metrics import evaluate_run_per_query
from embedtune.evaluation.retrieval_evaluator import subsample_corpus
from embedtune.evaluation.significance import compare_per_query
from embedtune.export.folder import ExportSource
from embedtune.export.onnx_export import write_onnx_export
from embedtune.model_paths import resolve_model_path
from embedtune.models.loading import load_model
from embedtune.models.onnx_backend import TOKENS_PER_RUN
from embedtune.models.precision import inference_autocast
from embedtune.search.retrieve import encode_documents, encode_queries, rank

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
MODEL = "all-MiniLM-L6-v2"
METRIC = "ndcg@10"
EXPORTS = [("fp32", "none"), ("int8", "int8")]
"""Exports measured: folder name, quantisation."""
SMALL_BATCH = 8
"""PyTorch fp32's second batch size."""


def split_of(data, name: str, max_docs: int | None, max_queries: int | None = None) -> EvalSplit:
    qrels = data.qrels[name]
    if max_queries is not None:
        qrels = {query: qrels[query] for query in sorted(qrels)[:max_queries]}
    corpus = subsample_corpus(data.corpus, qrels, max_docs)
    queries = {query: data.queries[query] for query in qrels}
    return EvalSplit(name, corpus, queries, qrels, f"SciFact {name}")


def measure(label: str, model, precision: str, split: EvalSplit, batch_size: int) -> dict:
    doc_ids, query_ids = list(split.corpus), list(split.queries)
    texts = [split.corpus[d] for d in doc_ids]
    with inference_autocast(precision, "cpu"):
        encode_documents(model, texts[:64], batch_size)  # warm-up: first-call allocations, onnxruntime's arena
        start = time.perf_counter()
        documents = encode_documents(model, texts, batch_size)  # (docs, dim)
        seconds = time.perf_counter() - start
        queries = encode_queries(model, [split.queries[q] for q in query_ids], batch_size)  # (queries, dim)
    run = rank(queries.float(), documents.float(), query_ids, doc_ids, 10, model.similarity)
    per_query = {query: scores[METRIC] for query, scores in evaluate_run_per_query(split.qrels, run, [METRIC]).items()}
    row = {
        "setup": label,
        "docs_per_s": len(texts) / seconds,
        "seconds": seconds,
        METRIC: sum(per_query.values()) / len(per_query),
    }
    print(f"{label:<30} {row['docs_per_s']:7.1f} docs/s ({seconds:6.1f} s)  nDCG@10 {row[METRIC]:.4f}", flush=True)
    return {**row, "per_query": per_query, "embeddings": documents.float()}


def measure_rounds(setups: list, split: EvalSplit, batch_size: int, rounds: int) -> list[dict]:
    """Each set-up encodes ``split`` ``rounds`` times, taking turns; its row keeps the median documents/s."""
    rows: list[dict] = []
    for round_index in range(rounds):
        print(f"round {round_index + 1} of {rounds}", flush=True)
        for index, (label, model, precision, setup_batch) in enumerate(setups):
            row = measure(label, model, precision, split, setup_batch or batch_size)
            if round_index == 0:
                rows.append({**row, "rounds_docs_per_s": [row["docs_per_s"]]})
            else:
                rows[index]["rounds_docs_per_s"].append(row["docs_per_s"])
    for row in rows:
        row["docs_per_s"] = statistics.median(row["rounds_docs_per_s"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, help="Encode the judged test documents plus a sample, N in all.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="Times the set-ups take turns (median speed).")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here.")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        raise SystemExit(f"{SCIFACT} is missing: this benchmark needs the shared SciFact folder")
    torch.manual_seed(0)
    data = load_beir(SCIFACT, ["train", "test"])
    test = split_of(data, "test", args.docs)
    check = split_of(data, "train", 1000, max_queries=100)
    folder = Path(resolve_model_path(MODEL))
    source = ExportSource(folder, folder, "base", False)
    exports = {}
    with tempfile.TemporaryDirectory(prefix="embedtune-export-bench-") as scratch:
        for name, quantize in EXPORTS:
            started = time.perf_counter()
            export = write_onnx_export(source, Path(scratch) / name, check, quantize, args.batch_size)
            exports[name] = export
            print(f"export {name}: {time.perf_counter() - started:.1f} s, check {export.check.summary()}")
        pytorch = load_model(MODEL)
        whole_batches = load_model(str(exports["int8"].path))
        whole_batches[0].tokens_per_run = None
        setups = [
            ("PyTorch fp32", pytorch, "fp32", None),
            (f"PyTorch fp32, batch {SMALL_BATCH}", pytorch, "fp32", SMALL_BATCH),
            ("PyTorch bf16", pytorch, "bf16", None),
            ("ONNX fp32", load_model(str(exports["fp32"].path)), "fp32", None),
            ("ONNX int8, whole batches", whole_batches, "fp32", None),
            (f"ONNX int8, {TOKENS_PER_RUN}-token slices", load_model(str(exports["int8"].path)), "fp32", None),
        ]
        threads = torch.get_num_threads()
        print(f"SciFact test: {len(test.queries)} queries, {len(test.corpus)} documents, {threads} threads")
        rows = measure_rounds(setups, test, args.batch_size, args.rounds)
        sizes = {q: (Path(e.path) / "model.onnx").stat().st_size for q, e in exports.items()}
    reference = rows[0]
    results = []
    for row in rows:
        comparison = compare_per_query(reference["per_query"], row["per_query"], metric=METRIC, resamples=10_000)
        cosine = torch.nn.functional.cosine_similarity(row["embeddings"], reference["embeddings"], dim=1)
        result = {
            "setup": row["setup"],
            "docs_per_s": round(row["docs_per_s"], 2),
            "rounds_docs_per_s": [round(value, 2) for value in row["rounds_docs_per_s"]],
            "speed_vs_pytorch_fp32": round(row["docs_per_s"] / reference["docs_per_s"], 2),
            METRIC: round(row[METRIC], 4),
            "delta_vs_pytorch_fp32": round(row[METRIC] - reference[METRIC], 4),
            "p_randomisation": None if row is reference else round(comparison.p_permutation, 4),
            "cosine_mean": round(float(cosine.mean()), 5),
            "cosine_min": round(float(cosine.min()), 5),
        }
        results.append(result)
        print(json.dumps(result))
    record = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "model": MODEL,
        "documents": len(test.corpus),
        "queries": len(test.queries),
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "onnx_bytes": sizes,
        "checks": {q: e.check.record() for q, e in exports.items()},
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
