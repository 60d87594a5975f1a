"""Negative feature weights in a search space: defaults in head mode, checks, one weight config per trial."""

import json
from pathlib import Path

import pytest

from embedtune.config import ConfigError, build_config
from embedtune.data.feature_weights import load_feature_weights
from embedtune.runs import load_run
from embedtune.tuning import best
from embedtune.tuning.feature_space import (
    WEIGHT_RANGE,
    check_feature_params,
    default_feature_params,
    split_values,
    write_trial_weights,
)
from embedtune.tuning.objective import RUN_ATTR
from embedtune.tuning.runner import TuneRequest, run_study
from embedtune.tuning.space import CATEGORICAL, FLOAT, Param
from embedtune.tuning.study import study_folder

from .test_tune import SPACE, base_settings


@pytest.fixture()
def weights_file(tmp_path: Path) -> Path:
    path = tmp_path / "weights.yaml"
    path.write_text("features:\n  near: 2.0\n  far: 1.0\ndefault: 0.5\ncombine: sum\n")
    return path


def config_with(weights: Path | None, mode: str = "head"):
    overrides = ["data.path=/tmp/data", f"train.mode={mode}"]
    return build_config(overrides=overrides + ([f"data.feature_weights={weights}"] if weights else []))


def test_head_mode_searches_every_feature_weight_by_default(weights_file: Path):
    params = default_feature_params(config_with(weights_file))
    assert params == [
        Param("feature_weights.near", FLOAT, *WEIGHT_RANGE, log=True),
        Param("feature_weights.far", FLOAT, *WEIGHT_RANGE, log=True),
    ]
    assert default_feature_params(config_with(weights_file, "full")) == []
    assert default_feature_params(config_with(None)) == []


@pytest.mark.parametrize(
    ("param", "weights", "message"),
    [
        (Param("feature_weights.near", FLOAT, 0.5, 2.0), False, "near: needs data.feature_weights"),
        (
            Param("feature_weights.price", FLOAT, 0.5, 2.0),
            True,
            "price: no feature 'price' in .*weights.yaml: far, near",
        ),
        (Param("feature_weights.near", CATEGORICAL, choices=(1.0, 0.0)), True, r"near = 0.0: .*finite number > 0"),
        (Param("feature_weights.near", CATEGORICAL, choices=(1.0, "x")), True, r"near = 'x': .*finite number > 0"),
    ],
)
def test_feature_params_are_checked_before_a_study(weights_file: Path, param: Param, weights: bool, message: str):
    with pytest.raises(ConfigError, match=f"^space.yaml: feature_weights.{message}"):
        check_feature_params([param], config_with(weights_file if weights else None), "space.yaml")


def test_a_trial_writes_its_own_weight_config_keeping_the_rest(weights_file: Path, tmp_path: Path):
    settings, weights = split_values({"train.epochs": 3, "feature_weights.near": 3.5})
    assert settings == {"train.epochs": 3} and weights == {"near": 3.5}

    path = write_trial_weights(weights_file, weights, tmp_path / "study", 7)

    assert path == tmp_path / "study" / "feature-weights" / "t7.json"
    written = load_feature_weights(path)
    assert (written.features, written.default, written.combine) == ({"near": 3.5, "far": 1.0}, 0.5, "sum")


def write_weighted_training_file(data: Path, path: Path) -> None:
    """Each train query of the noise set with its document and one distractor, found by 'near' or 'far'."""
    docs = {row["_id"]: row["text"] for row in map(json.loads, (data / "corpus.jsonl").read_text().splitlines())}
    queries = {row["_id"]: row["text"] for row in map(json.loads, (data / "queries.jsonl").read_text().splitlines())}
    rows = [line.split("\t") for line in (data / "qrels" / "train.tsv").read_text().splitlines()[1:]]
    records = [
        {
            "query": queries[qid],
            "pos": [docs[doc]],
            "neg": [docs[f"x{i % 10}"]],
            "neg_features": [["near" if i % 2 else "far"]],
        }
        for i, (qid, doc, _) in enumerate(rows)
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_trials_train_with_their_sampled_weights_and_best_yaml_names_them(
    tiny_model_dir, noise_beir, tmp_path, weights_file
):
    runs = tmp_path / "runs"
    train_file = tmp_path / "train.jsonl"
    write_weighted_training_file(noise_beir, train_file)
    base = base_settings(
        tiny_model_dir, noise_beir, runs, f"data.train_file={train_file}", f"data.feature_weights={weights_file}"
    )
    space = [*SPACE, Param("feature_weights.near", FLOAT, 0.5, 4.0, log=True)]

    outcome = run_study(TuneRequest(base, 600, "w", space, max_trials=2))

    for trial in outcome.study.get_trials():
        run = load_run(trial.user_attrs[RUN_ATTR])
        used = Path(run.config["data"]["feature_weights"])
        assert used == study_folder(runs, "w").resolve() / "feature-weights" / f"t{trial.number}.json"
        assert load_feature_weights(used).features == {"near": trial.params["feature_weights.near"], "far": 1.0}
    chosen = build_config(outcome.best_config)
    assert Path(chosen.data.feature_weights).name == f"t{outcome.best.number}.json"
    assert outcome.best_config == study_folder(runs, "w") / best.BEST_CONFIG_FILE
