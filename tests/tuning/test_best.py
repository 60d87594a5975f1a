"""The study's answer: a trial whose run ships its fine-tuned model beats a higher dev value shipping the base."""

from __future__ import annotations

from pathlib import Path

import optuna
from sentence_transformers import SentenceTransformer

from embedtune.training.pipeline import run_training
from embedtune.tuning import best
from embedtune.tuning.best import best_trial
from embedtune.tuning.objective import RUN_ATTR, SHIPS_ATTR
from embedtune.tuning.show import describe_best, trials_table
from tests.runs.factories import finished_run, make_metrics
from tests.training.test_lora_cache import weights
from tests.training.test_pipeline import tiny_config


def study_of(*trials: tuple[float, str]) -> optuna.Study:
    """An in-memory study with one complete trial per ``(dev value, what its run ships)``."""
    study = optuna.create_study(direction="maximize")
    for number, (value, ships) in enumerate(trials):
        attrs = {RUN_ATTR: f"runs/s-t{number}", SHIPS_ATTR: ships}
        study.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}, user_attrs=attrs))
    return study


def test_a_trial_that_ships_its_model_beats_a_higher_value_that_ships_the_base():
    study = study_of((0.70, "base"), (0.66, "fine_tuned"), (0.65, "fine_tuned"))
    assert best_trial(study).number == 1
    assert "ships the base model" not in describe_best(best_trial(study), Path("best.yaml"))


def test_when_every_trial_ships_the_base_the_highest_dev_value_wins_and_says_so():
    study = study_of((0.61, "base"), (0.64, "base"), (0.62, "base"))
    winner = best_trial(study)
    assert winner.number == 1
    line = describe_best(winner, Path("best.yaml"))
    assert line.startswith("Best: trial 1, dev 0.6400; configuration: best.yaml")
    assert "No trial beat the base model on dev" in line


def test_ties_go_to_the_earlier_trial_and_the_table_shows_what_each_ships():
    study = study_of((0.66, "fine_tuned"), (0.66, "fine_tuned"))
    assert best_trial(study).number == 0
    lines = trials_table(study).splitlines()
    rows = [line.split() for line in lines if line.split()[0].isdigit()]
    assert "SHIPS" in lines[0].split() and [row[3] for row in rows] == ["fine_tuned", "fine_tuned"]


def older_study_of(*trials: tuple[float, Path]) -> optuna.Study:
    """An in-memory study whose trials name their run but not what it ships (studies made before the attribute)."""
    study = optuna.create_study(direction="maximize")
    for value, run in trials:
        attrs = {RUN_ATTR: str(run)}
        study.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}, user_attrs=attrs))
    return study


def test_a_trial_of_an_older_study_is_ranked_by_what_its_run_ships(tmp_path):
    shipped_base = finished_run(tmp_path, "old-t0", make_metrics(chosen="base"))
    shipped_tuned = finished_run(tmp_path, "old-t1", make_metrics(chosen="fine_tuned"))
    assert best_trial(older_study_of((0.70, shipped_base), (0.66, shipped_tuned))).number == 1


def test_a_trial_of_an_older_study_whose_run_is_gone_counts_as_shipping(tmp_path):
    shipped_base = finished_run(tmp_path, "old-t0", make_metrics(chosen="base"))
    assert best_trial(older_study_of((0.70, shipped_base), (0.68, tmp_path / "gone"))).number == 1


def test_the_best_trial_is_tested_with_the_embeddings_its_run_left(tiny_model_dir, noise_beir, tmp_path, monkeypatch):
    overrides = ("train.epochs=5", "train.selection_alpha=none", "eval.report_test=false", "study=s", "name=s-t0")
    result = run_training(tiny_config(tiny_model_dir, noise_beir, tmp_path / "runs", *overrides))  # a full trial
    assert result.metrics.selection.chosen == "fine_tuned"
    shipped = weights(SentenceTransformer(str(result.folder / "model"), device="cpu"))
    documents: list[str] = []  # weights digest of each model that encoded documents
    encode_document = SentenceTransformer.encode_document

    def spy(self, texts, *args, **kwargs):
        documents.append(weights(self))
        return encode_document(self, texts, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode_document", spy)
    attrs = {RUN_ATTR: str(result.folder), SHIPS_ATTR: "fine_tuned"}
    trial = optuna.trial.create_trial(value=0.5, params={}, distributions={}, user_attrs=attrs)
    (tmp_path / "study").mkdir()
    record = best.test_once(tmp_path / "study", trial)

    assert record["split"] == "test" and record["fine_tuned"] != record["base"]
    assert shipped not in documents  # its run's final evaluation left the corpus embeddings in the shared cache
