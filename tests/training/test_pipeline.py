import json
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from embedtune.config import build_config
from embedtune.data.errors import DataError
from embedtune.training import pipeline
from embedtune.training.pipeline import run_training


def tiny_config(model_dir: Path, data_dir: Path, runs_dir: Path, *extra: str):
    return build_config(
        overrides=[
            f"model.name_or_path={model_dir}",
            f"data.path={data_dir}",
            f"runs_dir={runs_dir}",
            "name=tiny",
            "train.batch_size=4",
            "train.epochs=2",
            "train.learning_rate=1e-3",
            "train.logging_steps=1",
            "data.dev_fraction=0.2",
            *extra,
        ]
    )


def test_training_run_writes_complete_run_folder(tiny_model_dir, tiny_beir, tmp_path):
    result = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs"), echo=False)

    folder = result.folder
    assert folder.parent == tmp_path / "runs"
    assert folder.name.endswith("-tiny")
    record = json.loads((folder / "training_config.json").read_text())
    assert record["config"]["model"]["name_or_path"] == str(tiny_model_dir)
    assert record["config"]["train"]["batch_size"] == 4
    assert {"torch", "transformers", "sentence-transformers"} <= set(record["versions"])
    assert any(path.endswith("corpus.jsonl") for path in record["data_hashes"])
    assert all(len(digest) == 64 for digest in record["data_hashes"].values())

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == result.metrics
    assert set(metrics["test"]) == {"base", "fine_tuned"}
    assert set(metrics["test"]["base"]) == {"ndcg@10", "map@100", "recall@10", "recall@100", "mrr@10"}
    steps = [entry["step"] for entry in metrics["dev_history"]]
    assert steps[0] == 0 and len(steps) == 3 and steps == sorted(steps)
    best = metrics["best_checkpoint"]
    assert best["step"] in steps[1:]
    assert best["ndcg@10"] == max(entry["ndcg@10"] for entry in metrics["dev_history"][1:])
    assert metrics["peak_memory_mb"] > 0 and metrics["wall_time_s"] >= metrics["train_time_s"] > 0

    assert "step" in (folder / "train.log").read_text()
    assert list((folder / "tensorboard").glob("events.out.tfevents.*"))
    assert not (folder / "checkpoints").exists()
    model = SentenceTransformer(str(folder / "model"), device="cpu")
    assert model.encode(["what color is the apple"]).shape == (1, 32)


def write_association_beir(folder: Path) -> Path:
    """Queries and documents share no word, so only training can link them."""
    query_words = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum", "red"]
    doc_words = ["car", "bus", "train", "plane", "road", "wheel", "engine", "fuel", "city", "river", "sea"]
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": f"{word} {word}"}) + "\n" for i, word in enumerate(doc_words))
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": word}) + "\n" for i, word in enumerate(query_words))
    )
    (folder / "qrels").mkdir()
    for split, ids in (("train", range(10)), ("test", [10])):
        rows = "".join(f"q{i}\td{i}\t1\n" for i in ids)
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def test_fine_tuning_lowers_the_training_loss_and_changes_the_weights(tiny_model_dir, tmp_path):
    data_dir = write_association_beir(tmp_path / "assoc")
    config = tiny_config(tiny_model_dir, data_dir, tmp_path / "runs", "train.epochs=20", "data.dev_fraction=0.1")
    result = run_training(config, echo=False)
    losses = [entry["loss"] for entry in result.metrics["loss_history"]]
    assert len(losses) >= 20
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    base = SentenceTransformer(str(tiny_model_dir), device="cpu")
    tuned = SentenceTransformer(str(result.folder / "model"), device="cpu")
    assert not np.allclose(base.encode(["apple"]), tuned.encode(["apple"]), atol=1e-4)


def test_existing_run_folder_is_never_overwritten(tiny_model_dir, tiny_beir, tmp_path, monkeypatch):
    from datetime import datetime

    from embedtune.runs import folder as run_folder

    fixed = datetime(2026, 1, 2, 3, 4, 5)
    first = run_folder.create_run_folder(tmp_path, "same", now=fixed)
    (first / "keep.txt").write_text("user file")
    second = run_folder.create_run_folder(tmp_path, "same", now=fixed)
    assert first.name == "20260102-030405-same"
    assert second.name == "20260102-030405-same-2"
    assert (first / "keep.txt").read_text() == "user file"


def test_bad_data_fails_before_any_model_is_loaded(tiny_beir, tmp_path, monkeypatch):
    (tiny_beir / "queries.jsonl").write_text('{"_id": "q0", "text": "ok"}\n{"_id": "q1", "text": ""}\n')

    def fail_if_called(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was validated")

    monkeypatch.setattr(pipeline, "load_model", fail_if_called)
    config = tiny_config(Path("unused-model"), tiny_beir, tmp_path / "runs")
    with pytest.raises(DataError) as error:
        run_training(config, echo=False)
    assert error.value.line == 2 and error.value.field == "text"
    assert not (tmp_path / "runs").exists()


def test_jsonl_training_file_with_weighted_hard_negatives(tiny_model_dir, tiny_beir, tmp_path):
    rows = [
        {
            "query": f"what color is the {fruit}",
            "pos": [f"the {fruit} is sweet fruit"],
            "neg": ["the car is fast"],
            "neg_weights": [0.5],
        }
        for fruit in ["apple", "banana", "cherry", "grape", "lemon", "mango"]
    ]
    rows.append({"query": "what color is the bus", "pos": ["the bus is fast on the road"]})
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", f"data.train_file={train_file}")
    result = run_training(config, echo=False)
    record = json.loads((result.folder / "training_config.json").read_text())
    assert str(train_file) in record["data_hashes"]
    assert result.metrics["eval_split"] == "test"
