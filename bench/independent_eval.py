"""Evaluate a saved model on SciFact test without any embedtune code: sentence-transformers + pytrec_eval only.

A cross-check of the figures a run reports: load ``MODEL`` (a run's ``model/`` folder or a model name) with
``SentenceTransformer``, encode the 5,183 abstracts (``title + " " + text``) and the 300 test claims with normalised
embeddings, rank by cosine, keep the top 100 and score nDCG@10 with pytrec_eval::

    .venv/bin/python bench/independent_eval.py runs/<run>/model
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytrec_eval
from sentence_transformers import SentenceTransformer

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"


def main() -> None:
    """Print the model's mean nDCG@10 on SciFact test and its embedding shape."""
    if len(sys.argv) != 2:
        sys.exit("usage: independent_eval.py MODEL")
    if not SCIFACT.is_dir():
        sys.exit(f"{SCIFACT} not found: this check needs ../shared/datasets/scifact.")
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open(encoding="utf-8")]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open(encoding="utf-8"))}
    qrels: dict[str, dict[str, int]] = {}
    for query, doc, score in list(csv.reader((SCIFACT / "qrels" / "test.tsv").open(), delimiter="\t"))[1:]:
        qrels.setdefault(query, {})[doc] = int(score)
    ids = sorted(qrels)
    model = SentenceTransformer(sys.argv[1], device="cpu")
    documents = [(doc.get("title", "") + " " + doc["text"]).strip() for doc in corpus]
    doc_vectors = model.encode(documents, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    query_vectors = model.encode([queries[q] for q in ids], batch_size=64, normalize_embeddings=True)
    scores = query_vectors @ doc_vectors.T
    run = {}
    for row, query in enumerate(ids):
        top = np.argsort(-scores[row])[:100]
        run[query] = {corpus[j]["_id"]: float(scores[row, j]) for j in top}
    results = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    print(f"nDCG@10 {np.mean([r['ndcg_cut_10'] for r in results.values()]):.4f}; embeddings {doc_vectors.shape}")


if __name__ == "__main__":
    main()
