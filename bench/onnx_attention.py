"""Fused vs traced attention in the int8 ONNX graph: onnxruntime run time on three kinds of batches.

all-MiniLM-L6-v2 is traced twice with ``embedtune.export.graph.write_graph`` (``attention="fused"``: onnxruntime
``MultiHeadAttention`` with its flash branch for unpadded batches; ``"traced"``: the eager attention as plain ONNX
operators), both quantised to int8 as ``embedtune export --quantize int8`` does. Each graph then runs the same
pre-tokenised, length-sorted batches of 64 (tokenisation is not timed), the two taking turns ``--rounds`` times:

- ``longest``: the N longest SciFact abstracts (every batch cut at ``max_seq_length``, so none is padded);
- ``sample``: N abstracts drawn with a fixed seed (SciFact's mix: most batches unpadded, the short ones padded);
- ``claims``: every SciFact claim, twice (short texts, about 20 tokens, every batch padded).

It prints the median documents/s of each graph per kind and the mean cosine between the two graphs' embeddings.
Needs ``../shared/datasets/scifact``::

    .venv/bin/python bench/onnx_attention.py                  # N = 384, 5 rounds, ~6 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
from sentence_transformers import SentenceTransformer

from embedtune.data.beir import load_beir
from embedtune.export.graph import quantize_graph, write_graph
from embedtune.model_paths import resolve_model_path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
MODEL = "all-MiniLM-L6-v2"
BATCH = 64
ATTENTIONS = ("traced", "fused")


def batches_of(model: SentenceTransformer, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """Tokenise ``texts`` sorted by length into batches of :data:`BATCH` (``(batch, tokens)`` arrays)."""
    ordered = sorted(texts, key=len)
    batches = []
    for start in range(0, len(ordered), BATCH):
        features = model.preprocess(ordered[start : start + BATCH])
        batches.append({name: value.numpy() for name, value in features.items() if hasattr(value, "numpy")})
    return batches


def run_all(session: onnxruntime.InferenceSession, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    names = [node.name for node in session.get_inputs()]
    return np.concatenate([session.run(None, {name: batch[name] for name in names})[0] for batch in batches])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=384, help="Abstracts in the longest and sample kinds.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here.")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        raise SystemExit(f"{SCIFACT} is missing: this benchmark needs the shared SciFact folder")
    data = load_beir(SCIFACT)
    abstracts = list(data.corpus.values())
    kinds = {
        "longest": sorted(abstracts, key=len)[-args.docs :],
        "sample": random.Random(0).sample(abstracts, args.docs),
        "claims": list(data.queries.values()) * 2,
    }
    model = SentenceTransformer(str(resolve_model_path(MODEL)), device="cpu").eval()
    sessions = {}
    with tempfile.TemporaryDirectory(prefix="embedtune-attention-bench-") as scratch:
        for attention in ATTENTIONS:
            fp32, int8 = Path(scratch) / f"{attention}.fp32.onnx", Path(scratch) / f"{attention}.onnx"
            write_graph(model, fp32, attention)
            quantize_graph(fp32, int8)
            sessions[attention] = onnxruntime.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    results = {}
    for kind, texts in kinds.items():
        batches = batches_of(model, texts)
        padded = sum(int(batch["attention_mask"].min() == 0) for batch in batches)
        speeds: dict[str, list[float]] = {attention: [] for attention in ATTENTIONS}
        outputs = {attention: run_all(session, batches[:1]) for attention, session in sessions.items()}  # warm-up
        for _ in range(args.rounds):
            for attention, session in sessions.items():
                start = time.perf_counter()
                outputs[attention] = run_all(session, batches)
                speeds[attention].append(len(texts) / (time.perf_counter() - start))
        a, b = outputs["traced"], outputs["fused"]
        cosine = float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
        medians = {attention: statistics.median(values) for attention, values in speeds.items()}
        results[kind] = {
            "texts": len(texts),
            "batches": len(batches),
            "padded_batches": padded,
            "docs_per_s": {attention: round(value, 1) for attention, value in medians.items()},
            "rounds_docs_per_s": {attention: [round(v, 1) for v in values] for attention, values in speeds.items()},
            "fused_vs_traced": round(medians["fused"] / medians["traced"], 3),
            "cosine_fused_to_traced": round(cosine, 6),
        }
        print(json.dumps({"kind": kind, **results[kind]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"model": MODEL, "rounds": args.rounds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
