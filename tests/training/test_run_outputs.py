"""What a finished run leaves besides model/: per-query results, significance, score distributions, the forgetting
check, pair diagnostics and the report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from embedtune.config import build_config
from embedtune.evaluation.metrics import average_per_query
from embedtune.training.final_eval import Figures, FinalEvaluation
from embedtune.training.pipeline import run_training
from tests.conftest import FRUITS, VEHICLES
from tests.training.test_pipeline import tiny_config

QUICK = ("train.max_steps=2", "train.batch_size=4")


def read(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def test_a_run_saves_per_query_results_significance_score_distributions_and_a_report(
    tiny_model_dir, tiny_beir, tmp_path
):
    result = run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *QUICK))
    folder = result.folder
    metrics = read(folder, "metrics.json")
    per_query = read(folder, "per_query.json")
    qrels = {qid: {"_": 1} for qid in per_query["base"]}  # every reported query has a relevant document here
    for side in ("base", "fine_tuned"):
        means = average_per_query(qrels, per_query[side])
        for metric, value in metrics["report"][side].items():
            assert means[metric] == pytest.approx(value, abs=1e-12), (side, metric)
    significance = metrics["significance"]
    assert significance["queries"] == len(per_query["base"])
    assert significance["wins"] + significance["losses"] + significance["ties"] == significance["queries"]
    assert 0 <= significance["p_permutation"] <= 1 and "significant" in significance["verdict"]
    scores = read(folder, "score_distributions.json")
    assert scores["base"]["positive"] and all(-1.001 <= s <= 1.001 for s in scores["fine_tuned"]["positive"])
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert f"{metrics['report']['fine_tuned']['ndcg@10']:.4f}" in report


def test_extra_datasets_are_evaluated_with_both_models(tiny_model_dir, tiny_beir, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", *QUICK, f"eval.extra_datasets={tiny_beir}:test")
    metrics = read(run_training(config).folder, "metrics.json")
    (extra,) = metrics["extra_reports"]
    assert extra["dataset"] == f"{tiny_beir}:test" and extra["split"] == "test"
    assert extra["drop"] == pytest.approx(extra["base"]["ndcg@10"] - extra["fine_tuned"]["ndcg@10"], abs=1e-6)
    assert extra["forgetting"] == (extra["drop"] > 0.01)


def test_a_missing_extra_dataset_fails_before_any_run_folder(tiny_model_dir, tiny_beir, tmp_path):
    from embedtune.errors import DataError

    config = tiny_config(tiny_model_dir, tiny_beir, tmp_path / "runs", f"eval.extra_datasets={tmp_path / 'nope'}")
    with pytest.raises(DataError, match="extra_datasets"):
        run_training(config)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_drop_beyond_the_threshold_is_flagged_and_logged(tiny_beir, caplog):
    from embedtune.data.eval_splits import load_extra_split

    config = build_config(overrides=[f"data.path={tiny_beir}", "eval.forgetting_threshold=0.05"])
    name = str(tiny_beir)
    final = FinalEvaluation(config, load_extra_split(name), [load_extra_split(name)])
    base = Figures({}, {}, {}, extra={name: {"ndcg@10": 0.50}})
    small_drop = Figures({}, {}, {}, extra={name: {"ndcg@10": 0.46}})
    large_drop = Figures({}, {}, {}, extra={name: {"ndcg@10": 0.40}})
    with caplog.at_level(logging.WARNING):
        (kept,) = final.extra_reports(base, small_drop)
        assert not kept.forgetting and "FORGETTING" not in caplog.text
        (flagged,) = final.extra_reports(base, large_drop)
    assert flagged.forgetting and flagged.drop == pytest.approx(0.10)
    assert "FORGETTING" in caplog.text and name in caplog.text


def write_graded_pairs(path: Path) -> Path:
    """Every query has a relevant and an irrelevant passage, so each carved split holds both classes."""
    records = []
    for index, item in enumerate(FRUITS + VEHICLES):
        other = (FRUITS + VEHICLES)[(index + 3) % len(FRUITS + VEHICLES)]
        for template in ("what color is the {}", "where does the {} go", "is the {} big"):
            records.append({"text1": template.format(item), "text2": f"the {item} is here", "label": 0.9})
            records.append({"text1": template.format(item), "text2": f"the {other} is there", "label": 0.1})
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_a_pairs_run_reports_pair_diagnostics_for_both_models(tiny_model_dir, tmp_path):
    pairs = write_graded_pairs(tmp_path / "pairs.jsonl")
    config = build_config(
        overrides=[
            f"model.name_or_path={tiny_model_dir}",
            f"data.train_file={pairs}",
            f"runs_dir={tmp_path / 'runs'}",
            "loss.name=cosent",
            "data.test_fraction=0.25",
            "data.dev_fraction=0.25",
            *QUICK,
        ]
    )
    diagnostics = read(run_training(config).folder, "metrics.json")["pair_diagnostics"]
    for side in ("base", "fine_tuned"):
        figures = diagnostics[side]
        assert 0 <= figures["roc_auc"] <= 1 and 0 <= figures["f1"] <= 1
        assert figures["passed"] == (figures["roc_auc"] >= 0.7 and figures["f1"] >= 0.7)


@pytest.mark.parametrize("strategy", ["base_top_k", "random"])
def test_dev_evaluation_ranks_a_pool_of_the_configured_size(tiny_model_dir, tiny_beir, tmp_path, caplog, strategy):
    config = tiny_config(
        tiny_model_dir,
        tiny_beir,
        tmp_path / "runs",
        *QUICK,
        "data.dev_max_corpus=6",
        f"data.dev_candidates={strategy}",
    )
    with caplog.at_level(logging.INFO):
        run_training(config)
    assert "Dev pool: 6 of " in caplog.text and f"({strategy})" in caplog.text


def test_the_base_models_test_embeddings_come_from_the_cache_on_the_second_run(
    tiny_model_dir, tiny_beir, tmp_path, isolated_embedding_cache
):
    from embedtune.cache import EmbeddingCache

    first = read(run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "a", *QUICK)).folder, "metrics.json")
    entries = EmbeddingCache(isolated_embedding_cache).info()["entries"]
    assert entries > 0  # the base model's documents and queries
    second = read(run_training(tiny_config(tiny_model_dir, tiny_beir, tmp_path / "b", *QUICK)).folder, "metrics.json")
    assert EmbeddingCache(isolated_embedding_cache).info()["entries"] == entries  # nothing new: all hits
    assert second["report"]["base"] == first["report"]["base"]
