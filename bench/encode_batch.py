"""Evaluation encoding speed at each batch size, and at the automatic one (``eval.batch_size: none``).

Encodes and ranks SciFact's test split (the judged abstracts plus a seeded sample, ``--docs`` in all; the whole
corpus without it) with embedtune's evaluator at ``eval.precision: auto``, once per batch size, ``--repeats`` rounds
in turn so that drift in the machine's speed touches every size alike; prints documents/s per size (best round)
and the automatic size's choice. On a CPU the automatic size is 64; on a GPU it is sized from the free memory
(``embedtune.models.batch_size``), so the GPU rows come from ``bench/gpu.py``, which runs this part too.

    .venv/bin/python bench/encode_batch.py --docs 600 --repeats 2
"""

from __future__ import annotations

import argparse
import sys
import time

from speed import MODEL, SCIFACT, append_line, scifact_test

CPU_SIZES = (16, 32, 64, 128)
GPU_SIZES = (64, 128, 256, 512, 1024)


def batch_part(docs: int | None = None, repeats: int = 2, data=SCIFACT, model_name: str = MODEL) -> dict:
    """Time the evaluator at each batch size of the device and at the automatic size.

    Args:
        docs: Corpus documents encoded per evaluation (judged ones first); ``None``: the whole corpus (5,183).
        repeats: Rounds over the sizes; each size keeps its fastest round.
        data: A BEIR folder with a test split (SciFact by default).
        model_name: A model folder or name.

    Returns:
        ``{"device": str, "docs": int, "auto_batch_size": int, "docs_per_s": {size: float}, "ndcg@10": {size:
        float}, "auto_vs_best": float}``, sizes as strings (``"auto"`` for the automatic one); ``auto_vs_best`` is
        the automatic size's documents/s over the fastest fixed size's.
    """
    import torch

    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator, subsample_corpus
    from embedtune.models.batch_size import model_batch_size
    from embedtune.models.loading import load_model

    beir, qrels = scifact_test(data)
    corpus = subsample_corpus(beir.corpus, qrels, docs, seed=0)
    model = load_model(model_name)
    sizes = [*(GPU_SIZES if model.device.type == "cuda" else CPU_SIZES), None]
    speed, ndcg = {}, {}
    for _ in range(repeats):
        for size in sizes:
            options = {"batch_size": size, "progress": False, "precision": "auto"}
            evaluator = RetrievalEvaluator(corpus, beir.queries, qrels, **options)
            started = time.perf_counter()
            metrics = evaluator(model)
            seconds = time.perf_counter() - started
            name = "auto" if size is None else str(size)
            speed[name] = max(speed.get(name, 0.0), round(len(corpus) / seconds, 1))
            ndcg[name] = round(metrics["ndcg@10"], 4)
    best_fixed = max(value for name, value in speed.items() if name != "auto")
    return {
        "device": str(model.device) + (f" ({torch.cuda.get_device_name()})" if model.device.type == "cuda" else ""),
        "docs": len(corpus),
        "auto_batch_size": model_batch_size(model),
        "docs_per_s": speed,
        "ndcg@10": ndcg,
        "auto_vs_best": round(speed["auto"] / best_fixed, 2),
    }


def append_markdown(result: dict, repeats: int) -> None:
    """Append one dated line with ``result``'s documents/s per batch size to docs/benchmarks.md."""
    body = (
        "documents/s by batch size "
        + ", ".join(f"{name} {value}" for name, value in result["docs_per_s"].items())
        + f"; auto chose {result['auto_batch_size']} ({result['auto_vs_best']}x the fastest fixed size)."
    )
    append_line("encode_batch.py", f"{result['device']}, {result['docs']} documents, best of {repeats}", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, help="Documents per evaluation (default: the whole corpus).")
    parser.add_argument("--repeats", type=int, default=2, help="Rounds over the sizes (default 2).")
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"SciFact not found at {SCIFACT}: this benchmark needs ../shared/datasets/scifact.")
    result = batch_part(args.docs, args.repeats)
    print(result, flush=True)
    if not args.no_record:
        append_markdown(result, args.repeats)


if __name__ == "__main__":
    main()
