import json
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from embedtune import runs
from embedtune.cache import EmbeddingCache
from embedtune.config import build_config
from embedtune.data.prepare import prepare_data
from embedtune.errors import DataError
from embedtune.model_paths import ModelNotFoundError
from embedtune.models.precision import inference_autocast
from embedtune.training import fine_tune, pipeline
from embedtune.training.mode import FullMode
from embedtune.training.pipeline import RunFailedError, run_training


def tiny_config(model_dir: Path, data_dir: Path, runs_dir: Path, *extra: str):
    return build_config(
        overrides=[
            f"model.name_or_path={model_dir}",
            f"data.path={data_dir}",
            f"runs_dir={runs_dir}",
            "name=tiny",
            "train.batch_size=8",
            "train.epochs=1",
            "train.learning_rate=3e-3",
            "train.logging_steps=1",
            "data.dev_fraction=0.25",
            *extra,
        ]
    )


def assert_corpus_cached(shipped: SentenceTransformer, config) -> None:
    """Assert the shipped model (loaded from the run) finds the report corpus in the embedding cache.

    A run keeps its shipped model's embeddings, so `embedtune eval`, `mine --teacher` and `index build` reuse them.
    """

    def refuse(texts):
        raise AssertionError(f"{len(texts)} documents encoded again")

    corpus = list(prepare_data(config.data).report.corpus.values())
    with inference_autocast(config.eval.precision, "cpu"):
        assert len(EmbeddingCache().get_or_encode(shipped, corpus, "document", refuse)) == len(corpus)


def scalar_tags(folder: Path) -> set[str]:
    accumulator = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"]) | {f"hist:{tag}" for tag in accumulator.Tags()["histograms"]}


def test_fine_tuning_that_helps_on_dev_is_selected_and_reported(tiny_model_dir, noise_beir, tmp_path):
    config = tiny_config(tiny_model_dir, noise_beir, tmp_path / "runs", "train.epochs=20")
    result = run_training(config)

    history = result.metrics.to_dict()["dev_history"]
    assert history[0]["step"] == 0 and history[0]["ndcg@10"] < 0.2  # the untouched model is evaluated first
    assert max(entry["ndcg@10"] for entry in history[1:]) > history[0]["ndcg@10"] + 0.5
    selection = result.metrics.to_dict()["selection"]
    assert selection["chosen"] == "fine_tuned"
    assert selection["best_dev"] == max(entry["ndcg@10"] for entry in history[1:])
    assert selection["step"] == next(e["step"] for e in history[1:] if e["ndcg@10"] == selection["best_dev"])
    report = result.metrics.to_dict()["report"]
    assert report["split"] == "test" and report["role"] == "test"
    assert report["fine_tuned"]["ndcg@10"] > report["base"]["ndcg@10"] + 0.3  # held-out test queries improve too

    folder = result.folder
    info = runs.load_run(folder)
    assert info.status == "finished" and info.name == "tiny"
    assert info.record.config["train"]["epochs"] == 20.0
    assert any(path.endswith("corpus.jsonl") for path in info.record.data_hashes)
    assert json.loads((folder / "metrics.json").read_text())["selection"]["chosen"] == "fine_tuned"
    assert "dev (untouched model)" in (folder / "train.log").read_text()
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "eval/dev_ndcg@10"} <= scalar_tags(folder)
    assert not any(tag.startswith(("hist:", "grad_norm/")) for tag in scalar_tags(folder))  # opt-in only
    assert not (folder / "checkpoints").exists()
    base = SentenceTransformer(str(tiny_model_dir), device="cpu")
    tuned = SentenceTransformer(str(folder / "model"), device="cpu")
    assert not np.allclose(base.encode(["apple"]), tuned.encode(["apple"]), atol=1e-4)
    assert_corpus_cached(tuned, config)


def test_base_model_is_kept_when_no_checkpoint_beats_it(tiny_model_dir, noise_beir, tmp_path):
    config = tiny_config(tiny_model_dir, noise_beir, tmp_path / "runs", "train.learning_rate=1e-12")
    result = run_training(config)

    selection = result.metrics.to_dict()["selection"]
    assert selection["chosen"] == "base" and selection["step"] is None and selection["delta"] <= 0
    assert selection["verdict"].startswith("fine-tuning did not beat the base model on dev: best Δ nDCG@10")
    assert (
        "model/ is the base model (rule: Δ > 0 and paired randomisation test p < 0.05 on the whole dev corpus"
        in (selection["verdict"])
    )
    assert selection["rule"] in selection["verdict"] and selection["dev_comparison"]["mean_diff"] == selection["delta"]
    report = result.metrics.to_dict()["report"]
    assert report["fine_tuned"] == report["base"]
    base = SentenceTransformer(str(tiny_model_dir), device="cpu")
    kept = SentenceTransformer(str(result.folder / "model"), device="cpu")
    assert np.allclose(base.encode(["apple pear"]), kept.encode(["apple pear"]), atol=1e-6)
    assert "did not beat the base model" in runs.format_run_show(runs.load_run(result.folder))
    assert len(EmbeddingCache().info()["models"]) == 1  # the base model's: no candidate was kept


def write_weighted_file(path: Path, weight: float) -> Path:
    fruits = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum"]
    rows = [
        {"query": f"what color is the {fruit}", "pos": [f"the {fruit} is sweet fruit"], "neg": ["the car is fast"]}
        | {"neg_weights": [weight]}
        for fruit in fruits
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_hard_negative_weights_reach_the_loss(tiny_model_dir, tiny_beir, tmp_path):
    first_losses = []
    for weight in (0.5, 50.0):
        train_file = write_weighted_file(tmp_path / f"train-{weight}.jsonl", weight)
        config = tiny_config(
            tiny_model_dir, tiny_beir, tmp_path / "runs", f"data.train_file={train_file}", "train.max_steps=1"
        )
        result = run_training(config)
        assert result.metrics.to_dict()["num_train_examples"] == 8  # 10 minus 2 carved out as dev from the file
        first_losses.append(result.metrics.to_dict()["loss_history"][0]["loss"])
    # A larger weight multiplies exp(sim) of the hard negative in the denominator: the loss must grow.
    assert first_losses[1] > first_losses[0] + 0.1


def test_bad_data_fails_before_any_model_is_loaded(tiny_beir, tmp_path, monkeypatch):
    (tiny_beir / "queries.jsonl").write_text('{"_id": "q0", "text": "ok"}\n{"_id": "q1", "text": ""}\n')

    def fail_if_called(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was validated")

    monkeypatch.setattr(pipeline, "load_base_model", fail_if_called)
    with pytest.raises(DataError) as error:
        run_training(tiny_config(Path("unused-model"), tiny_beir, tmp_path / "runs"))
    assert error.value.line == 2 and error.value.field == "text"
    assert not (tmp_path / "runs").exists()


def test_a_model_that_cannot_load_leaves_no_run_folder(tiny_beir, tmp_path):
    with pytest.raises(ModelNotFoundError):
        run_training(tiny_config(tmp_path / "no-such-model", tiny_beir, tmp_path / "runs"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")])
def test_a_crash_after_start_is_recorded_in_the_run(tiny_model_dir, tiny_beir, tmp_path, monkeypatch, error, status):
    def crash(*args, **kwargs):
        raise error

    monkeypatch.setattr(FullMode, "train", crash)
    with pytest.raises((RunFailedError, KeyboardInterrupt)):
        run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs"))
    [folder] = list((tmp_path / "runs").iterdir())
    info = runs.load_run(folder)
    assert info.status == status
    assert (info.error or "") != ""
    if status == "failed":
        assert "RuntimeError: boom" in info.error and "Traceback" in (folder / "train.log").read_text()


def test_whole_corpus_dev_evaluation_works(tiny_model_dir, tiny_beir, tmp_path):
    result = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "data.dev_max_corpus=none"))
    assert [entry["step"] for entry in result.metrics.to_dict()["dev_history"]] == [0, 1]


def test_prefixes_are_saved_as_the_models_prompts(tiny_model_dir, tiny_beir, tmp_path):
    config = tiny_config(
        tiny_model_dir, tiny_beir, tmp_path / "runs", "model.query_prefix=what is ", "model.passage_prefix=the "
    )
    result = run_training(config)
    model = SentenceTransformer(str(result.folder / "model"), device="cpu")
    assert model.prompts["query"] == "what is " and model.prompts["document"] == "the "
    with_prompt = model.encode_query(["apple"])
    assert np.allclose(with_prompt, model.encode(["what is apple"]), atol=1e-6)
    assert not np.allclose(with_prompt, model.encode(["apple"]), atol=1e-4)


def test_without_a_test_split_the_report_is_labelled_as_the_selection_split(tiny_model_dir, tiny_beir, tmp_path):
    (tiny_beir / "qrels" / "test.tsv").unlink()
    carved = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs"))
    assert (
        carved.metrics.to_dict()["report"]["role"] == "test"
        and carved.metrics.to_dict()["splits"]["test_queries"] >= 1
    )
    none = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", "data.test_fraction=0"))
    assert (
        none.metrics.to_dict()["report"]["role"] == "selection" and none.metrics.to_dict()["report"]["split"] == "dev"
    )
    assert "selection split" in runs.format_run_show(runs.load_run(none.folder))


def test_gradient_logs_are_opt_in(tiny_model_dir, tiny_beir, tmp_path):
    gradient_logs = ("train.log_module_grad_norms=true", "train.log_grad_histograms=on")
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *gradient_logs)
    tags = scalar_tags(run_training(config).folder)
    assert any(tag.startswith("grad_norm/") for tag in tags)
    assert any(tag.startswith("hist:grad/") for tag in tags)


def test_the_step_0_dev_evaluation_does_not_change_training(tiny_model_dir, noise_beir, tmp_path, monkeypatch):
    with_start = run_training(tiny_config(tiny_model_dir, noise_beir, tmp_path / "a", "train.epochs=3"))
    original = fine_tune.training_arguments

    def without_start_evaluation(*args, **kwargs):
        arguments = original(*args, **kwargs)
        arguments.eval_on_start = False
        return arguments

    monkeypatch.setattr(fine_tune, "training_arguments", without_start_evaluation)
    monkeypatch.setattr(pipeline, "decide_on_dev", lambda *args, **kwargs: with_start.metrics.selection)
    without = run_training(tiny_config(tiny_model_dir, noise_beir, tmp_path / "b", "train.epochs=3"))
    assert with_start.metrics.loss_history == without.metrics.loss_history
    assert with_start.metrics.dev_history[1:] == without.metrics.dev_history


def test_dataloader_workers_tokenise_the_same_batches(tiny_model_dir, noise_beir, tmp_path):
    in_process = run_training(tiny_config(tiny_model_dir, noise_beir, tmp_path / "a", "train.epochs=2"))
    workers = run_training(
        tiny_config(tiny_model_dir, noise_beir, tmp_path / "b", "train.epochs=2", "train.dataloader_workers=2")
    )
    assert in_process.metrics.loss_history == workers.metrics.loss_history
    assert in_process.metrics.dev_history == workers.metrics.dev_history
