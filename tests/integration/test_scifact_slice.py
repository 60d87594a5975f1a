"""Integration test: the packaged all-MiniLM-L6-v2 fine-tuned for a few steps on a small slice of SciFact."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from embedtune.config import build_config
from embedtune.data.beir import load_beir, write_beir
from embedtune.data.types import RetrievalSet
from embedtune.model_paths import packaged_minilm_path
from embedtune.training.pipeline import run_training

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scifact"


@pytest.fixture(scope="module")
def scifact_slice(tmp_path_factory) -> Path:
    if not SCIFACT.is_dir():
        pytest.skip(f"SciFact not found at {SCIFACT} (../shared/datasets/scifact): integration test skipped")
    full = load_beir(SCIFACT)
    rng = random.Random(0)
    train_ids = rng.sample(sorted(full.qrels["train"]), 48)
    test_ids = rng.sample(sorted(full.qrels["test"]), 16)
    qrels = {
        "train": {q: full.qrels["train"][q] for q in train_ids},
        "test": {q: full.qrels["test"][q] for q in test_ids},
    }
    judged = {d for split in qrels.values() for judgements in split.values() for d in judgements}
    distractors = rng.sample(sorted(set(full.corpus) - judged), 120)
    corpus = {d: full.corpus[d] for d in sorted(judged | set(distractors))}
    queries = {q: full.queries[q] for q in train_ids + test_ids}
    return write_beir(RetrievalSet(corpus, queries, qrels), tmp_path_factory.mktemp("scifact") / "slice")


def test_minilm_fine_tunes_on_scifact_slice(scifact_slice, tmp_path):
    config = build_config(
        overrides=[
            "model.name_or_path=all-MiniLM-L6-v2",
            f"data.path={scifact_slice}",
            f"runs_dir={tmp_path}",
            "name=scifact-slice",
            "model.max_seq_length=128",
            "train.batch_size=16",
            "train.epochs=4",
            "train.learning_rate=1e-4",
            "train.logging_steps=1",
            "data.dev_fraction=0.25",
        ]
    )
    result = run_training(config)
    metrics = json.loads((result.folder / "metrics.json").read_text())
    base = metrics["report"]["base"]
    # The real model is far better than chance on 16 queries over ~190 abstracts (chance nDCG@10 is about 0.03).
    assert base["ndcg@10"] > 0.4
    assert [entry["step"] for entry in metrics["dev_history"]][0] == 0 and len(metrics["dev_history"]) == 5
    # Fine-tuning must do something real: the contrastive loss on the training pairs falls as the model fits them.
    losses = [entry["loss"] for entry in metrics["loss_history"]]
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses
    # Selection is consistent with the dev history and with what model/ holds.
    history, selection = metrics["dev_history"], metrics["selection"]
    assert selection["base_dev"] == history[0]["ndcg@10"]
    assert selection["best_dev"] == max(entry["ndcg@10"] for entry in history[1:])
    model = SentenceTransformer(str(result.folder / "model"), device="cpu")
    base_model = SentenceTransformer(str(packaged_minilm_path()), device="cpu")
    text = ["Vitamin D deficiency is linked to fractures."]
    same_as_base = np.allclose(model.encode(text), base_model.encode(text), atol=1e-5)
    assert same_as_base == (selection["chosen"] == "base")
    assert model.max_seq_length == 128
    assert model.encode(text).shape == (1, 384)
