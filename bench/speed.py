"""Speed benchmark on SciFact with all-MiniLM-L6-v2, measured side by side in one process, printed as ratios.

Parts (all by default):
  cache      the second evaluation of the same model over SciFact test with the embedding cache vs the first
             (target >= 20x faster), same figures;
  encoding   embedtune's evaluator vs ``SentenceTransformer.encode_document`` + search and vs sentence-transformers'
             ``InformationRetrievalEvaluator`` on the same corpus (target >= 1.0x, nDCG@10 equal to 1e-4);
  compile    encoding with torch.compile vs eager (first call includes compiling);
  precision  training steps/s of embedtune's trainer set-up with fp32 and with bf16 autocast, and of a plain
             sentence-transformers Trainer (MNRL, batch 32) in fp32 and bf16 (target >= 1.0x; >= 1.5x where bf16
             pays);
  overhead   the CPU proxy of the GPU gap: a tiny randomly initialised BERT (2 layers, hidden 64, 32 tokens, MiniLM's
             tokenizer) whose arithmetic is negligible, trained on SciFact's pairs as ``embedtune train`` builds them
             (row labels, false-negative table, symmetric InfoNCE, embedtune's callbacks) vs a plain ST Trainer +
             MNRL on the same pairs, fp32, batch 32 (target: embedtune >= 1.0x ST);
  inference  SciFact test encoded + ranked by embedtune's evaluator at fp32 and at bf16 autocast (and fp16 on CUDA),
             documents/s and nDCG@10 side by side (target: bf16 >= 1.4x fp32 where bf16 is native, nDCG@10 within
             0.001); ``--docs N`` ranks the judged documents plus a seeded sample up to N (emulated bf16 is slow);
  sync       CUDA only: host synchronisations per training step, embedtune vs ST (target: no more than ST);
  head       a head-mode SciFact run (frozen encoder + 256-d head, 10 epochs) with a warm embedding cache: wall time
             of the whole run (target <= 30 s on 2 cores);
  lora-base  a LoRA run's base figures on SciFact test with the base model's embeddings in the cache: the run's base
             view (a fresh load of the base) vs the adapted model before training (what runs evaluated before
             commit 8b9b8da; same embeddings, other fingerprint), side by side, same nDCG@10.

The full default SciFact run before and after (wall time, test nDCG@10) is ``bench/scifact.py``; its rows are in
docs/benchmarks.md.

    .venv/bin/python bench/speed.py
    .venv/bin/python bench/speed.py --part precision --steps 12 --no-record
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
MODEL = "all-MiniLM-L6-v2"


def scifact_test(data: Path = SCIFACT):
    from embedtune.data.beir import load_beir

    beir = load_beir(data, splits=["train", "test"])
    return beir, beir.qrels["test"]


def cache_part() -> dict:
    """Evaluate the base model twice with a fresh cache folder; the second must re-encode nothing."""
    from embedtune.cache.store import EmbeddingCache
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
    from embedtune.models.loading import load_model

    beir, qrels = scifact_test()
    model = load_model(MODEL)
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(Path(folder), max_bytes=2 * 2**30)
        evaluator = RetrievalEvaluator(beir.corpus, beir.queries, qrels, cache=cache)
        started = time.perf_counter()
        first = evaluator(model)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        second = evaluator(load_model(MODEL))  # a fresh load of the same model: found by its fingerprint
        warm = time.perf_counter() - started
    assert first == second, "cached evaluation must give the same figures"
    return {
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 2),
        "ratio": round(cold / warm, 1),
        "ndcg@10": first["ndcg@10"],
    }


def encoding_part(data: Path = SCIFACT, model_name: str = MODEL) -> dict:
    """Corpus encoding + ranking: embedtune's evaluator vs ST encode + search vs ST's InformationRetrievalEvaluator.

    ``data`` is the BEIR folder (its test split is ranked) and ``model_name`` the model, SciFact and all-MiniLM-L6-v2
    by default.
    """
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from embedtune.evaluation.metrics import evaluate_run
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
    from embedtune.models.loading import load_model
    from embedtune.search.retrieve import rank

    beir, qrels = scifact_test(data)
    model = load_model(model_name)
    queries = {qid: beir.queries[qid] for qid in qrels}
    timings, ndcg = {}, {}
    started = time.perf_counter()
    ndcg["embedtune"] = RetrievalEvaluator(beir.corpus, queries, qrels)(model)["ndcg@10"]
    timings["embedtune"] = time.perf_counter() - started
    timings["tokenize_corpus"] = _tokenize_seconds(model, list(beir.corpus.values()))
    started = time.perf_counter()
    doc_ids, query_ids = list(beir.corpus), list(queries)
    docs = model.encode_document([beir.corpus[d] for d in doc_ids], batch_size=64, convert_to_tensor=True)
    encoded = model.encode_query([queries[q] for q in query_ids], batch_size=64, convert_to_tensor=True)
    run = rank(encoded, docs, query_ids, doc_ids, 100, model.similarity)
    ndcg["st_encode"] = evaluate_run(qrels, run, ["ndcg@10"])["ndcg@10"]
    timings["st_encode"] = time.perf_counter() - started
    relevant = {qid: {d for d, score in judged.items() if score > 0} for qid, judged in qrels.items()}
    ir = InformationRetrievalEvaluator(queries, beir.corpus, relevant, batch_size=64, show_progress_bar=False)
    started = time.perf_counter()
    results = ir(model)
    timings["st_ir_evaluator"] = time.perf_counter() - started
    ndcg["st_ir_evaluator"] = next(v for k, v in results.items() if k.endswith("cosine_ndcg@10"))
    return {
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "ndcg@10": ndcg,
        "speedup_vs_st_encode": round(timings["st_encode"] / timings["embedtune"], 2),
        "speedup_vs_ir_evaluator": round(timings["st_ir_evaluator"] / timings["embedtune"], 2),
    }


def _tokenize_seconds(model, texts: list[str], batch_size: int = 64) -> float:
    """Seconds ``model.preprocess`` takes over ``texts`` in length-sorted batches, as ``encode`` tokenises them.

    Every whole-corpus evaluation pays it again; its share of the encoding time (bench/gpu.py prints both on a GPU)
    says whether tokenising a corpus once per run would pay.
    """
    ordered = sorted(texts, key=len, reverse=True)
    started = time.perf_counter()
    for start in range(0, len(ordered), batch_size):
        model.preprocess(ordered[start : start + batch_size])
    return time.perf_counter() - started


def precision_part(steps: int, data: Path = SCIFACT, model_name: str = MODEL, batch_size: int = 32) -> dict:
    """Training steps/s: embedtune's set-up (InfoNCE, its trainer arguments) and a plain ST Trainer, fp32 and bf16.

    Both train on the (query, positive) pairs of ``data``'s train split (SciFact by default) with ``model_name``, on
    CUDA where there is one.
    """
    from datasets import Dataset

    from embedtune.config import build_config
    from embedtune.losses import build_loss
    from embedtune.training.arguments import training_arguments
    from embedtune.training.mode import prepare_model_for_mode

    beir, _ = scifact_test(data)
    pairs = [(beir.queries[q], beir.corpus[d]) for q, docs in beir.qrels["train"].items() for d in docs]
    dataset = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [d for _, d in pairs]})
    results = {}
    for precision in ("fp32", "bf16"):
        config = build_config(
            overrides=[
                f"data.path={data}",
                f"train.precision={precision}",
                f"train.max_steps={steps}",
                f"train.batch_size={batch_size}",
            ]
        )

        def embedtune_setup(model, folder, config=config):
            prepare_model_for_mode(model, config)  # as embedtune train does (train.dropout)
            return training_arguments(config, folder, None), build_loss(model, config.loss)

        results[f"embedtune {precision}"] = _steps_per_second(embedtune_setup, dataset, model_name)
        results[f"sentence-transformers {precision}"] = _steps_per_second(
            lambda model, folder, precision=precision: (
                _st_arguments(folder, steps, precision, batch_size),
                _mnrl(model),
            ),
            dataset,
            model_name,
        )
    base = results["embedtune fp32"]
    return {
        "steps_per_s": results,
        "bf16_vs_fp32": round(results["embedtune bf16"] / base, 2),
        "embedtune_vs_st_fp32": round(base / results["sentence-transformers fp32"], 2),
        "embedtune_vs_st_bf16": round(results["embedtune bf16"] / results["sentence-transformers bf16"], 2),
    }


def overhead_part(steps: int = 40, data: Path = SCIFACT) -> dict:
    """Steps/s of a tiny model: embedtune's training set-up as ``embedtune train`` builds it vs a plain ST trainer.

    The model is 2 layers of width 64 with all-MiniLM-L6-v2's tokenizer (real tokenisation, negligible arithmetic),
    so what is measured is the per-step work around the model: data collation, the loss, callbacks.
    """
    embedtune_setup, dataset, pairs = run_setup(data, ["train.precision=fp32", f"train.max_steps={steps}"])

    with tempfile.TemporaryDirectory() as folder:
        model_dir = tiny_model(Path(folder))
        results = {
            "embedtune": _steps_per_second(embedtune_setup, dataset, str(model_dir)),
            "sentence-transformers": _steps_per_second(
                lambda model, out: (_st_arguments(out, steps, "fp32"), _mnrl(model)), pairs, str(model_dir)
            ),
        }
    return {
        "steps_per_s": results,
        "embedtune_vs_st": round(results["embedtune"] / results["sentence-transformers"], 2),
    }


def run_setup(data: Path, overrides: list[str], extra_callbacks: list | None = None):
    """Return embedtune's training set-up as ``embedtune train`` builds it, and the same pairs for a plain ST trainer.

    Returns:
        ``(make, dataset, pairs)``: ``make(model, folder)`` gives the trainer arguments, loss and callbacks (with
        ``extra_callbacks``); ``dataset`` has the run's columns (anchor, positive, label = row index); ``pairs`` only
        anchor and positive.
    """
    from datasets import Dataset

    from embedtune.config import build_config
    from embedtune.data.prepare import prepare_data
    from embedtune.losses import build_loss
    from embedtune.training.arguments import training_arguments
    from embedtune.training.fine_tune import training_data
    from embedtune.training.mode import prepare_model_for_mode
    from embedtune.training.trainer_setup import SilentWriter, standard_callbacks

    config = build_config(overrides=[f"data.path={data}", *overrides])
    dataset, context = training_data(config, prepare_data(config.data))
    pairs = Dataset.from_dict({"anchor": dataset["anchor"], "positive": dataset["positive"]})

    def make(model, folder):
        prepare_model_for_mode(model, config)  # as embedtune train does (train.dropout)
        loss = build_loss(model, config.loss, context)
        callbacks = [*standard_callbacks(config, SilentWriter(), loss, folder), *(extra_callbacks or [])]
        return training_arguments(config, folder, None), loss, callbacks

    return make, dataset, pairs


def sync_part(steps: int = 20, data: Path = SCIFACT, model_name: str = MODEL) -> dict:
    """CUDA only: host synchronisations per training step (torch's sync debug mode), embedtune's set-up vs ST's.

    Counted from the start of each step to its end (forward, loss, backward, optimiser), logging steps included, as
    ``embedtune train`` builds the run (row labels, false-negative table, callbacks) and for a plain ST trainer + MNRL.
    """
    import warnings

    import torch
    from transformers import TrainerCallback

    if not torch.cuda.is_available():
        return {"skipped": "needs CUDA"}

    class CountSyncs(TrainerCallback):
        def __init__(self) -> None:
            self.syncs, self.steps, self._catcher, self._log = 0, 0, None, None

        def on_step_begin(self, args, state, control, **kwargs) -> None:
            self._catcher = warnings.catch_warnings(record=True)
            self._log = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

        def on_step_end(self, args, state, control, **kwargs) -> None:
            torch.cuda.set_sync_debug_mode("default")
            self._catcher.__exit__(None, None, None)
            self.syncs += sum("synchroniz" in str(w.message).lower() for w in self._log)
            self.steps += 1

    counters = {"embedtune": CountSyncs(), "sentence-transformers": CountSyncs()}
    embedtune_setup, dataset, pairs = run_setup(
        data, ["train.precision=bf16", f"train.max_steps={steps}"], [counters["embedtune"]]
    )
    _steps_per_second(embedtune_setup, dataset, model_name)
    _steps_per_second(
        lambda model, out: (_st_arguments(out, steps, "bf16"), _mnrl(model), [counters["sentence-transformers"]]),
        pairs,
        model_name,
    )
    return {name: round(counter.syncs / max(counter.steps, 1), 2) for name, counter in counters.items()}


def tiny_model(folder: Path) -> Path:
    """Save a randomly initialised 2-layer BERT of width 64 with all-MiniLM-L6-v2's tokenizer; return its folder."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from embedtune.model_paths import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder / "hf")
    tokenizer.save_pretrained(folder / "hf")
    transformer = models.Transformer(str(folder / "hf"), max_seq_length=32)  # short: the model costs little
    modules = [transformer, models.Pooling(64, pooling_mode="mean"), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder / "st"))
    return folder / "st"


def inference_part(docs: int | None = None, data: Path = SCIFACT, model_name: str = MODEL) -> dict:
    """Encode + rank SciFact test at each precision with the same evaluator; documents/s and nDCG@10 per precision."""
    import torch

    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator, subsample_corpus
    from embedtune.models.loading import load_model
    from embedtune.models.precision import cpu_has_native_bf16

    beir, qrels = scifact_test(data)
    corpus = subsample_corpus(beir.corpus, qrels, docs, seed=0)
    model = load_model(model_name)
    precisions = ["fp32", "bf16"] + (["fp16"] if torch.cuda.is_available() else [])
    results = {}
    for precision in precisions:
        evaluator = RetrievalEvaluator(corpus, beir.queries, qrels, progress=False, precision=precision)
        started = time.perf_counter()
        ndcg = evaluator(model)["ndcg@10"]
        seconds = time.perf_counter() - started
        results[precision] = {"docs_per_s": round(len(corpus) / seconds, 1), "ndcg@10": round(ndcg, 4)}
    native = torch.cuda.is_available() or cpu_has_native_bf16()
    return {
        "docs": len(corpus),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "native_bf16": native,
        "results": results,
        "bf16_speedup": round(results["bf16"]["docs_per_s"] / results["fp32"]["docs_per_s"], 2),
        "bf16_ndcg_delta": round(results["bf16"]["ndcg@10"] - results["fp32"]["ndcg@10"], 4),
    }


def head_part(data: Path = SCIFACT) -> dict:
    """Run a head-mode SciFact run twice in one embedding cache folder; the second (warm) run's wall time counts.

    The selection test is off so that the head is kept and its test evaluation is part of the time.
    """
    from embedtune.config import build_config
    from embedtune.training.pipeline import run_training

    walls = []
    with tempfile.TemporaryDirectory() as folder:
        for attempt in ("cold", "warm"):
            overrides = [
                f"data.path={data}",
                "train.mode=head",
                "train.epochs=10",
                "head.dim=256",
                "train.head_learning_rate=1e-3",
                "train.selection_alpha=none",  # keep the head (dev +0.047, p = 0.054): its test evaluation is timed
                f"eval.cache_dir={folder}/cache",
                f"runs_dir={folder}/runs",
                f"name=head-{attempt}",
            ]
            started = time.perf_counter()
            result = run_training(build_config(overrides=overrides))
            walls.append(round(time.perf_counter() - started, 1))
    metrics = result.metrics
    return {
        "cold_s": walls[0],
        "warm_s": walls[1],
        "chosen": metrics.selection.chosen,
        "test_ndcg@10": (metrics.report.base["ndcg@10"], metrics.report.fine_tuned["ndcg@10"]),
    }


def lora_base_part(data: Path = SCIFACT, model_name: str = MODEL) -> dict:
    """Time a LoRA run's base figures on SciFact test, warm cache: the base view vs the untrained adapted model."""
    from embedtune.config import build_config
    from embedtune.data.prepare import prepare_data
    from embedtune.models.loading import load_base_model
    from embedtune.training.final_eval import FinalEvaluation
    from embedtune.training.mode import prepare_model_for_mode
    from embedtune.training.modes import base_view

    figures: dict = {}
    with tempfile.TemporaryDirectory() as folder:  # a cache holding the base model's embeddings and nothing else
        overrides = [f"data.path={data}", f"model.name_or_path={model_name}", "train.mode=lora"]
        config = build_config(overrides=[*overrides, f"eval.cache_dir={folder}"])
        final = FinalEvaluation(config, prepare_data(config.data).report, [])
        final.evaluate(load_base_model(config), "base")  # as any earlier run of the base model leaves it
        model = load_base_model(config)
        setup = prepare_model_for_mode(model, config)
        for side, view in (("base_view", lambda: base_view(model, setup)), ("adapted_model", lambda: model)):
            started = time.perf_counter()
            report = final.evaluate(view(), "base").report
            seconds = round(time.perf_counter() - started, 1)
            figures[side] = {"seconds": seconds, "ndcg@10": round(report["ndcg@10"], 4)}
    figures["speedup"] = round(figures["adapted_model"]["seconds"] / max(figures["base_view"]["seconds"], 0.1), 1)
    return figures


def compile_part(docs: int = 1000) -> dict:
    """Time encoding ``docs`` SciFact abstracts eagerly vs with ``torch.compile`` (first call includes compiling)."""
    import torch

    from embedtune.models.loading import load_model

    beir, _ = scifact_test()
    texts = list(beir.corpus.values())[:docs]
    model = load_model(MODEL)
    transformer = model[0].model  # ST 6's Transformer module calls getattr(self.model, "forward")
    timings, embeddings = {}, {}
    for label in ("eager", "compiled first", "compiled second"):
        if label == "compiled first":
            transformer.forward = torch.compile(transformer.forward, dynamic=True)
        started = time.perf_counter()
        embeddings[label] = model.encode_document(texts, batch_size=64, convert_to_tensor=True)
        timings[label] = round(time.perf_counter() - started, 1)
    difference = float((embeddings["eager"] - embeddings["compiled second"]).abs().max())
    eager = timings["eager"]
    speedup = round(eager / timings["compiled second"], 2)
    return {"seconds": timings, "steady_speedup": speedup, "docs": docs, "max_abs_difference": difference}


def _mnrl(model):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model)


def _st_arguments(folder: Path, steps: int, precision: str, batch_size: int = 32):
    import torch
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    return SentenceTransformerTrainingArguments(
        output_dir=str(folder),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=2e-5,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=42,
        bf16=precision == "bf16",
        use_cpu=precision == "bf16" and not torch.cuda.is_available(),  # CPU bf16 autocast needs it; CUDA must not
        disable_tqdm=True,
    )


def _steps_per_second(make, dataset, model_name: str = MODEL) -> float:
    """Train ``max_steps`` steps; steps/s over all but the first two (warm-up) steps.

    ``make(model, folder)`` returns ``(arguments, loss)`` or ``(arguments, loss, callbacks)``.
    """
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import TrainerCallback

    from embedtune.models.loading import load_model

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs) -> None:
            self.times.append(time.perf_counter())

    model = load_model(model_name)
    timer = StepTimes()
    with tempfile.TemporaryDirectory() as folder:
        args, loss, *callbacks = make(model, Path(folder))
        args.eval_strategy = "no"
        args.eval_on_start = False
        args.load_best_model_at_end = False
        args.save_strategy = "no"
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=loss,
            callbacks=[timer, *(callbacks[0] if callbacks else [])],
        )
        trainer.train()
    measured = timer.times[2:]
    return round((len(measured) - 1) / (measured[-1] - measured[0]), 4)


def append_line(script: str, details: str, body: str) -> None:
    """Append ``- bench/<script> (<date>, commit <sha>, <details>): <body>`` to docs/benchmarks.md."""
    from embedtune.runs.folder import git_commit

    commit = (git_commit(ROOT) or "unknown")[:12]
    with BENCHMARKS_MD.open("a", encoding="utf-8") as handle:
        handle.write(f"- bench/{script} ({date.today()}, commit {commit}, {details}): {body}\n")


def append_markdown(results: dict) -> None:
    from embedtune.runs.folder import git_commit

    full_commit = git_commit(ROOT) or "unknown"
    commit = full_commit[:12] + ("+dirty" if full_commit.endswith("+dirty") else "")
    rows = ["", f"### bench/speed.py ({date.today()}, commit {commit})", ""]
    if "cache" in results:
        c = results["cache"]
        rows.append(
            f"- Cache: SciFact test evaluation of {MODEL} cold {c['cold_s']} s, warm {c['warm_s']} s: "
            f"{c['ratio']}x faster, same figures (nDCG@10 {c['ndcg@10']:.4f})."
        )
    if "encoding" in results:
        e = results["encoding"]
        rows.append(
            f"- Encoding + ranking the SciFact test corpus: embedtune {e['seconds']['embedtune']} s, ST encode "
            f"{e['seconds']['st_encode']} s ({e['speedup_vs_st_encode']}x), ST InformationRetrievalEvaluator "
            f"{e['seconds']['st_ir_evaluator']} s ({e['speedup_vs_ir_evaluator']}x); nDCG@10 "
            + ", ".join(f"{k} {v:.4f}" for k, v in e["ndcg@10"].items())
            + "."
        )
    if "precision" in results:
        p = results["precision"]
        rows.append(
            "- Training steps/s (SciFact pairs, batch 32): "
            + ", ".join(f"{k} {v:.3f}" for k, v in p["steps_per_s"].items())
            + f"; bf16 vs fp32 {p['bf16_vs_fp32']}x; embedtune vs ST {p['embedtune_vs_st_fp32']}x (fp32), "
            f"{p['embedtune_vs_st_bf16']}x (bf16)."
        )
    if "overhead" in results:
        o = results["overhead"]
        rows.append(
            "- CPU overhead proxy (2-layer width-64 BERT, MiniLM tokenizer, SciFact pairs, fp32, batch 32): steps/s "
            + ", ".join(f"{k} {v:.3f}" for k, v in o["steps_per_s"].items())
            + f"; embedtune vs ST {o['embedtune_vs_st']}x."
        )
    if "inference" in results:
        i = results["inference"]
        rows.append(
            f"- Encoding precision ({i['device']}{'' if i['native_bf16'] else ', bf16 emulated'}, SciFact test, "
            f"{i['docs']} documents): "
            + ", ".join(f"{k} {v['docs_per_s']} docs/s nDCG@10 {v['ndcg@10']:.4f}" for k, v in i["results"].items())
            + f"; bf16 {i['bf16_speedup']}x fp32, nDCG@10 {i['bf16_ndcg_delta']:+.4f}."
        )
    if "sync" in results and "skipped" not in results["sync"]:
        rows.append(
            "- Host synchronisations per training step (CUDA sync debug mode, bf16, batch 32): "
            + ", ".join(f"{k} {v}" for k, v in results["sync"].items())
            + "."
        )
    if "head" in results:
        h = results["head"]
        base, tuned = h["test_ndcg@10"]
        rows.append(
            f"- Head-mode SciFact run (256-d head, 10 epochs): cold cache {h['cold_s']} s, warm cache {h['warm_s']} s "
            f"wall; selected {h['chosen']}; test nDCG@10 {base:.4f} -> {tuned:.4f}."
        )
    if "compile" in results:
        c = results["compile"]
        rows.append(
            f"- torch.compile (dynamic shapes) encoding {c['docs']} abstracts: "
            + ", ".join(f"{k} {v} s" for k, v in c["seconds"].items())
            + f"; steady state {c['steady_speedup']}x eager; max |difference| {c['max_abs_difference']:.1e}."
        )
    with BENCHMARKS_MD.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=list(PARTS), action="append", help="Parts to run (default: all).")
    parser.add_argument(
        "--steps", type=int, default=10, help="Training steps per steps/s measurement (precision, overhead)."
    )
    parser.add_argument("--docs", type=int, help="inference: rank the judged documents plus a sample up to N.")
    parser.add_argument("--no-record", action="store_true", help="Do not append to docs/benchmarks.md.")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"SciFact not found at {SCIFACT}: this benchmark needs ../shared/datasets/scifact.")
    results = {}
    for part in args.part or list(PARTS):
        if part in STEPPED_PARTS:
            results[part] = PARTS[part](args.steps)
        elif part == "inference":
            results[part] = inference_part(args.docs)
        else:
            results[part] = PARTS[part]()
        print(part, results[part], flush=True)
    if not args.no_record:
        append_markdown(results)


PARTS = {
    "cache": cache_part,
    "encoding": encoding_part,
    "precision": precision_part,
    "overhead": overhead_part,
    "inference": inference_part,
    "sync": sync_part,
    "head": head_part,
    "compile": compile_part,
    "lora-base": lora_base_part,
}
STEPPED_PARTS = ("precision", "overhead", "sync")

if __name__ == "__main__":
    main()
