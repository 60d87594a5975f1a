from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.runs.format import (
    MISSING,
    RunInfo,
    config_diff,
    find_runs,
    flatten_config,
    format_run_compare,
    format_run_list,
    format_run_show,
    load_run,
    resolve_run,
)


def _config(**overrides) -> dict:
    config = {
        "model": {"name_or_path": "sentence-transformers/all-MiniLM-L6-v2", "max_seq_length": 256},
        "training": {"learning_rate": 2e-5, "epochs": 1, "batch_size": 32, "loss": {"name": "infonce", "scale": 20}},
        "data": {"path": "data/fiqa", "hard_negatives": True},
    }
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return config


def _metrics(base: float, tuned: float, wall: float = 3723.0) -> dict:
    return {
        "primary_metric": "ndcg@10",
        "eval_split": "test",
        "test": {
            "base": {"ndcg@10": base, "map@100": 0.2500, "mrr@10": 0.4000},
            "fine_tuned": {"ndcg@10": tuned, "map@100": 0.2750, "mrr@10": 0.4400},
        },
        "dev_history": [
            {"step": 100, "epoch": 0.5, "ndcg@10": 0.3311, "mrr@10": 0.4012},
            {"step": 200, "epoch": 1.0, "ndcg@10": 0.3477, "mrr@10": 0.4123},
        ],
        "best_checkpoint": {"step": 200, "ndcg@10": 0.3477},
        "wall_time_s": wall,
        "train_time_s": 3000.0,
        "peak_memory_mb": 2048.5,
    }


def make_run(root: Path, folder: str, config: dict | None = None, metrics: dict | None = None) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    record = {
        "name": folder.split("-", 2)[2],
        "created": "2024-05-01T10:30:00+00:00",
        "config": config if config is not None else _config(),
        "versions": {"embedtune": "0.1.0", "torch": "2.3.0"},
        "data_hashes": {"data/fiqa/corpus.jsonl": "ab" * 32},
        "git_commit": "0123abc",
    }
    (path / "training_config.json").write_text(json.dumps(record))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    return path


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root, "20240502-090000-fiqa-lr5e5", _config(training__learning_rate=5e-5), _metrics(0.3000, 0.3612))
    make_run(root, "20240501-103000-fiqa", _config(), _metrics(0.3000, 0.3456, wall=42.25))
    make_run(root, "20240503-080000-fiqa-crashed", _config(training__epochs=3))
    (root / "not-a-run").mkdir()
    (root / "stray.txt").write_text("x")
    return root


# --- load_run / find_runs ----------------------------------------------------------------------------------------


def test_load_complete_run(runs_root: Path):
    run = load_run(runs_root / "20240501-103000-fiqa")
    assert isinstance(run, RunInfo)
    assert run.name == "fiqa"
    assert run.folder == "20240501-103000-fiqa"
    assert run.created == "2024-05-01T10:30:00+00:00"
    assert run.status == "complete"
    assert run.config["training"]["learning_rate"] == 2e-5
    assert run.metrics["test"]["fine_tuned"]["ndcg@10"] == 0.3456
    assert run.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert run.versions["torch"] == "2.3.0"
    assert run.git_commit == "0123abc"


def test_load_incomplete_run(runs_root: Path):
    run = load_run(runs_root / "20240503-080000-fiqa-crashed")
    assert run.status == "incomplete"
    assert run.metrics is None
    assert run.primary_metric is None


def test_load_run_missing_config(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="training_config.json"):
        load_run(tmp_path)


def test_load_run_invalid_config_json(tmp_path: Path):
    (tmp_path / "training_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"training_config\.json is not valid JSON"):
        load_run(tmp_path)


def test_load_run_config_not_an_object(tmp_path: Path):
    (tmp_path / "training_config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="training_config.json must hold a JSON object"):
        load_run(tmp_path)


def test_load_run_invalid_metrics_json(tmp_path: Path):
    path = make_run(tmp_path, "20240101-000000-x")
    (path / "metrics.json").write_text("")
    with pytest.raises(ValueError, match=r"metrics\.json is not valid JSON"):
        load_run(path)


def test_find_runs_sorted_oldest_first_and_skips_non_runs(runs_root: Path):
    folders = [run.folder for run in find_runs(runs_root)]
    assert folders == ["20240501-103000-fiqa", "20240502-090000-fiqa-lr5e5", "20240503-080000-fiqa-crashed"]


def test_find_runs_missing_root(tmp_path: Path):
    assert find_runs(tmp_path / "nope") == []


# --- resolve_run -------------------------------------------------------------------------------------------------


def test_resolve_by_path(runs_root: Path):
    path = runs_root / "20240501-103000-fiqa"
    assert resolve_run(str(path), root=runs_root / "elsewhere") == path


def test_resolve_by_folder_name(runs_root: Path):
    assert resolve_run("20240501-103000-fiqa", root=runs_root) == runs_root / "20240501-103000-fiqa"


def test_resolve_by_run_name_even_when_it_is_a_substring_of_others(runs_root: Path):
    # "fiqa" is in every folder name, but only one run is named exactly "fiqa".
    assert resolve_run("fiqa", root=runs_root) == runs_root / "20240501-103000-fiqa"


def test_resolve_by_unique_suffix_and_substring(runs_root: Path):
    assert resolve_run("lr5e5", root=runs_root) == runs_root / "20240502-090000-fiqa-lr5e5"
    assert resolve_run("ashed", root=runs_root) == runs_root / "20240503-080000-fiqa-crashed"
    assert resolve_run("20240503", root=runs_root) == runs_root / "20240503-080000-fiqa-crashed"


def test_resolve_ambiguous_lists_candidates(runs_root: Path):
    with pytest.raises(ValueError, match="ambiguous") as info:
        resolve_run("2024050", root=runs_root)
    for folder in ("20240501-103000-fiqa", "20240502-090000-fiqa-lr5e5", "20240503-080000-fiqa-crashed"):
        assert folder in str(info.value)


def test_resolve_unknown_lists_available(runs_root: Path):
    with pytest.raises(ValueError, match="no run matches 'msmarco'") as info:
        resolve_run("msmarco", root=runs_root)
    assert "20240501-103000-fiqa" in str(info.value)


def test_resolve_ignores_folders_that_are_not_runs(runs_root: Path):
    with pytest.raises(ValueError, match="no run matches"):
        resolve_run("not-a-run", root=runs_root)


def test_resolve_empty_ref(runs_root: Path):
    with pytest.raises(ValueError, match="empty"):
        resolve_run("", root=runs_root)


# --- flatten_config / config_diff --------------------------------------------------------------------------------


def test_flatten_config():
    nested = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None, "f": {}}
    assert flatten_config(nested) == {"a.b.c": 1, "a.d": [1, 2], "e": None, "f": {}}
    assert flatten_config({"x": {"y": 2}}, prefix="cfg") == {"cfg.x.y": 2}


def test_config_diff():
    a = {"training": {"lr": 1e-5, "epochs": 1}, "model": {"name": "m"}, "only_a": 1}
    b = {"training": {"lr": 2e-5, "epochs": 1}, "model": {"name": "m"}, "only_b": {"x": True}}
    assert config_diff(a, b) == [
        ("training.lr", 1e-5, 2e-5),
        ("only_a", 1, MISSING),
        ("only_b.x", MISSING, True),
    ]
    assert config_diff(a, a) == []


# --- format_run_list ---------------------------------------------------------------------------------------------


def test_format_run_list(runs_root: Path):
    text = format_run_list(find_runs(runs_root))
    lines = text.splitlines()
    assert "RUN" in lines[0] and "STATUS" in lines[0] and "WALL TIME" in lines[0]
    by_folder = {line.split()[0]: line for line in lines[2:]}
    assert list(by_folder) == ["20240501-103000-fiqa", "20240502-090000-fiqa-lr5e5", "20240503-080000-fiqa-crashed"]
    first = by_folder["20240501-103000-fiqa"]
    assert "complete" in first
    assert "sentence-transformers/all-MiniLM-L6-v2" in first
    assert "ndcg@10 0.3000 -> 0.3456 (+0.0456)" in first
    assert "42.2s" in first
    second = by_folder["20240502-090000-fiqa-lr5e5"]
    assert "ndcg@10 0.3000 -> 0.3612 (+0.0612)" in second
    assert "1h 02m 03s" in second
    crashed = by_folder["20240503-080000-fiqa-crashed"]
    assert "incomplete" in crashed and "->" not in crashed


def test_format_run_list_tolerates_missing_keys(tmp_path: Path):
    metrics = {"primary_metric": "mrr@10", "test": {"fine_tuned": {"mrr@10": 0.5}}}
    make_run(tmp_path, "20240101-000000-bare", config={}, metrics=metrics)
    line = format_run_list(find_runs(tmp_path)).splitlines()[2]
    assert "mrr@10 - -> 0.5000 (-)" in line
    assert line.split()[:3] == ["20240101-000000-bare", "complete", "-"]


def test_format_run_list_empty():
    assert format_run_list([]) == "No runs found."


def test_format_run_list_columns_are_aligned(runs_root: Path):
    lines = format_run_list(find_runs(runs_root)).splitlines()
    status_column = lines[0].index("STATUS")
    assert all(line[status_column:].startswith(("complete", "incomplete")) for line in lines[2:])


# --- format_run_show ---------------------------------------------------------------------------------------------


def test_format_run_show(runs_root: Path):
    text = format_run_show(load_run(runs_root / "20240502-090000-fiqa-lr5e5"))
    assert "Run: 20240502-090000-fiqa-lr5e5" in text
    assert "Status: complete" in text
    assert "Git commit: 0123abc" in text
    # Config, flattened.
    assert "  model.name_or_path = sentence-transformers/all-MiniLM-L6-v2" in text
    assert "  training.learning_rate = 5e-05" in text
    assert "  training.loss.scale = 20" in text
    assert "  data.hard_negatives = true" in text
    # Versions and data hashes.
    assert "  torch = 2.3.0" in text
    assert f"  data/fiqa/corpus.jsonl = {'ab' * 32}" in text
    # Test metrics: base | fine-tuned | delta.
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  ") and "@" in line}
    assert rows["ndcg@10"] == ["0.3000", "0.3612", "+0.0612"]
    assert rows["map@100"] == ["0.2500", "0.2750", "+0.0250"]
    assert rows["mrr@10"] == ["0.4000", "0.4400", "+0.0400"]
    assert "Best checkpoint: step 200 (ndcg@10 = 0.3477)" in text
    assert "Wall time: 1h 02m 03s" in text
    assert "Peak memory: 2048.5 MB" in text


def test_format_run_show_dev_history(runs_root: Path):
    text = format_run_show(load_run(runs_root / "20240501-103000-fiqa"))
    history = text[text.index("Dev history:") :].splitlines()
    assert history[1].split() == ["STEP", "EPOCH", "ndcg@10", "mrr@10"]
    assert history[3].split() == ["100", "0.50", "0.3311", "0.4012"]
    assert history[4].split() == ["200", "1.00", "0.3477", "0.4123"]


def test_format_run_show_incomplete(runs_root: Path):
    text = format_run_show(load_run(runs_root / "20240503-080000-fiqa-crashed"))
    assert "Status: incomplete" in text
    assert "metrics.json missing" in text
    assert "  training.epochs = 3" in text
    assert "Best checkpoint" not in text


def test_format_run_show_without_best_checkpoint(tmp_path: Path):
    metrics = _metrics(0.3, 0.4)
    metrics["best_checkpoint"] = None
    metrics["dev_history"] = []
    text = format_run_show(load_run(make_run(tmp_path, "20240101-000000-x", metrics=metrics)))
    assert "Best checkpoint: none" in text
    assert "Dev history: none" in text


# --- format_run_compare ------------------------------------------------------------------------------------------


def test_format_run_compare(runs_root: Path):
    runs = [load_run(runs_root / name) for name in ("20240501-103000-fiqa", "20240502-090000-fiqa-lr5e5")]
    text = format_run_compare(runs)
    assert "[1] 20240501-103000-fiqa" in text and "[2] 20240502-090000-fiqa-lr5e5" in text
    config_part = text[text.index("Config differences") : text.index("Fine-tuned test metrics")]
    assert "training.learning_rate" in config_part
    assert config_part.count("\n  training.") == 1  # only the differing key
    assert "training.epochs" not in config_part and "model.name_or_path" not in config_part
    lr_row = next(line for line in config_part.splitlines() if "training.learning_rate" in line)
    assert lr_row.split() == ["training.learning_rate", "2e-05", "5e-05"]
    metric_part = text[text.index("Fine-tuned test metrics") :].splitlines()
    assert metric_part[1].split() == ["METRIC", "BASE", "[1]", "[1]", "[2]"]
    rows = {line.split()[0]: line.split()[1:] for line in metric_part[3:]}
    assert rows["ndcg@10"] == ["0.3000", "0.3456", "0.3612"]
    assert rows["mrr@10"] == ["0.4000", "0.4400", "0.4400"]
    assert "42.2s" in rows["wall"] and "1h" in rows["wall"]


def test_format_run_compare_with_incomplete_and_missing_keys(runs_root: Path, tmp_path: Path):
    extra = make_run(tmp_path, "20240504-000000-other", config={"model": {"name_or_path": "bge-small"}})
    runs = [load_run(runs_root / "20240501-103000-fiqa"), load_run(runs_root / "20240503-080000-fiqa-crashed")]
    text = format_run_compare([*runs, load_run(extra)])
    epochs_row = next(line for line in text.splitlines() if "training.epochs" in line)
    assert epochs_row.split() == ["training.epochs", "1", "3", MISSING]
    model_row = next(line for line in text.splitlines() if "model.name_or_path" in line)
    assert model_row.split()[-1] == "bge-small"
    ndcg_row = next(line for line in text.splitlines() if line.strip().startswith("ndcg@10"))
    assert ndcg_row.split() == ["ndcg@10", "0.3000", "0.3456", "-", "-"]


def test_format_run_compare_identical_configs(tmp_path: Path):
    a = load_run(make_run(tmp_path, "20240101-000000-a", metrics=_metrics(0.3, 0.31)))
    b = load_run(make_run(tmp_path, "20240102-000000-b", metrics=_metrics(0.3, 0.32)))
    assert "Config differences: none" in format_run_compare([a, b])


def test_format_run_compare_needs_two_runs(runs_root: Path):
    with pytest.raises(ValueError, match="at least 2"):
        format_run_compare([load_run(runs_root / "20240501-103000-fiqa")])
