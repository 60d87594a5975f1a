from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.runs import (
    MISSING,
    config_diff,
    fail_run,
    find_runs,
    flatten_config,
    format_run_compare,
    format_run_list,
    format_run_show,
    load_run,
    split_label,
)
from tests.runs.factories import finished_run, make_config, make_metrics, started_by_dead_process, started_run


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    finished_run(root, "fiqa", make_metrics(0.3000, 0.3456, wall=42.25))
    finished_run(root, "fiqa-lr5e5", make_metrics(0.3000, 0.3612), config=make_config(training__learning_rate=5e-5))
    fail_run(started_run(root, "fiqa-crashed", make_config(training__epochs=3)), "RuntimeError: CUDA out of memory")
    return root


def run_named(root: Path, name: str):
    return next(run for run in find_runs(root) if run.name == name)


def list_rows(text: str) -> dict[str, str]:
    return {line.split()[0].split("-", 2)[2]: line for line in text.splitlines()[2:]}


# --- flatten_config / config_diff --------------------------------------------------------------------------------


def test_flatten_config():
    nested = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None, "f": {}}
    assert flatten_config(nested) == {"a.b.c": 1, "a.d": [1, 2], "e": None, "f": {}}
    assert flatten_config({"x": {"y": 2}}, prefix="cfg") == {"cfg.x.y": 2}


def test_config_diff():
    a = {"training": {"lr": 1e-5, "epochs": 1}, "model": {"name": "m"}, "only_a": 1}
    b = {"training": {"lr": 2e-5, "epochs": 1}, "model": {"name": "m"}, "only_b": {"x": True}}
    assert config_diff(a, b) == [("training.lr", 1e-5, 2e-5), ("only_a", 1, MISSING), ("only_b.x", MISSING, True)]
    assert config_diff(a, a) == []


# --- format_run_list ---------------------------------------------------------------------------------------------


def test_format_run_list(runs_root: Path):
    text = format_run_list(find_runs(runs_root))
    header = text.splitlines()[0]
    for column in ("RUN", "STATUS", "BASE MODEL", "PRIMARY METRIC (BASE -> FINE-TUNED)", "SPLIT", "WALL TIME"):
        assert column in header
    rows = list_rows(text)
    assert sorted(rows) == ["fiqa", "fiqa-crashed", "fiqa-lr5e5"]
    first = rows["fiqa"]
    assert first.split()[1:3] == ["finished", "sentence-transformers/all-MiniLM-L6-v2"]
    assert "ndcg@10 0.3000 -> 0.3456 (+0.0456)" in first
    assert first.split()[-2:] == ["test", "42.2s"]
    second = rows["fiqa-lr5e5"]
    assert "ndcg@10 0.3000 -> 0.3612 (+0.0612)" in second and "1h 02m 03s" in second
    crashed = rows["fiqa-crashed"]
    assert crashed.split()[1] == "failed" and "->" not in crashed


def test_format_run_list_every_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    finished_run(tmp_path, "done")
    started_run(tmp_path, "live")
    fail_run(started_run(tmp_path, "broke"), "boom")
    fail_run(started_run(tmp_path, "stopped"), "KeyboardInterrupt", interrupted=True)
    started_by_dead_process(tmp_path, "killed", monkeypatch)
    corrupt = tmp_path / "20000101-000000-junk"
    corrupt.mkdir()
    (corrupt / "run.json").write_text("{")
    rows = list_rows(format_run_list(find_runs(tmp_path)))
    statuses = {name: line.split()[1] for name, line in rows.items()}
    assert statuses == {
        "done": "finished",
        "live": "running",
        "broke": "failed",
        "stopped": "interrupted",
        "killed": "interrupted",
        "junk": "corrupt",
    }
    assert rows["junk"].split()[2:] == ["-", "-", "-", "-"]


def test_format_run_list_marks_a_selection_split(tmp_path: Path):
    finished_run(tmp_path, "no-test", make_metrics(0.3, 0.35, role="selection", split="dev"))
    line = format_run_list(find_runs(tmp_path)).splitlines()[2]
    assert "ndcg@10 0.3000 -> 0.3500 (+0.0500)" in line
    assert "dev (selection split, not held-out test)" in line
    assert " test " not in line.replace("held-out test", "")


def test_format_run_list_marks_a_kept_base_model(tmp_path: Path):
    finished_run(tmp_path, "worse", make_metrics(0.3, 0.29, chosen="base"))
    assert "ndcg@10 0.3000 -> 0.2900 (-0.0100), base kept" in format_run_list(find_runs(tmp_path))


def test_format_run_list_empty():
    assert format_run_list([]) == "No runs found."


def test_format_run_list_columns_are_aligned(runs_root: Path):
    lines = format_run_list(find_runs(runs_root)).splitlines()
    status_column = lines[0].index("STATUS")
    assert all(line[status_column:].startswith(("finished", "failed")) for line in lines[2:])


def test_split_label():
    assert split_label(make_metrics().report) == "test"
    report = make_metrics(role="selection", split="dev").report
    assert split_label(report) == "dev (selection split, not held-out test)"
    assert split_label(report, short=True) == "dev (selection)"


# --- format_run_show ---------------------------------------------------------------------------------------------


def test_format_run_show(runs_root: Path):
    run = run_named(runs_root, "fiqa-lr5e5")
    text = format_run_show(run)
    assert f"Run: {run.folder}" in text
    assert "Status: finished" in text and "Error:" not in text
    assert f"Created: {run.record.created}" in text and f"Finished: {run.record.finished}" in text
    assert "Command: embedtune train --name fiqa-lr5e5" in text
    assert f"Git commit: {run.record.git_commit or 'unknown'}" in text
    assert "  model.name_or_path = sentence-transformers/all-MiniLM-L6-v2" in text
    assert "  training.learning_rate = 5e-05" in text
    assert "  training.loss.scale = 20" in text
    assert "  data.hard_negatives = true" in text
    assert f"  python = {run.record.versions['python']}" in text
    assert f"  data/fiqa/corpus.jsonl = {'ab' * 32}" in text
    assert "Test metrics (test split, primary: ndcg@10):" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  ") and "@" in line}
    assert rows["ndcg@10"] == ["0.3000", "0.3612", "+0.0612"]
    assert rows["map@100"] == ["0.2500", "0.2750", "+0.0250"]
    assert rows["mrr@10"] == ["0.4000", "0.4400", "+0.0400"]
    assert "Selection: fine-tuned checkpoint at step 200 (dev ndcg@10 0.3477 vs base 0.3300, +0.0177)" in text
    assert "Splits: train 900, dev 100, test 200 (training examples: 5000)" in text
    assert "Training loss: 1.2345 at step 10 -> 0.4321 at step 200 (2 logged)" in text
    assert "Wall time: 1h 02m 03s" in text and "Train time: 50m 00s" in text
    assert "Peak memory: 2048.5 MB" in text


def test_format_run_show_dev_history(runs_root: Path):
    text = format_run_show(run_named(runs_root, "fiqa"))
    history = text[text.index("Dev history:") :].splitlines()
    assert history[1].split() == ["STEP", "EPOCH", "ndcg@10", "mrr@10"]
    assert history[3].split() == ["100", "0.50", "0.3311", "0.4012"]
    assert history[4].split() == ["200", "1.00", "0.3477", "0.4123"]


def test_format_run_show_selection_split_is_never_called_test(tmp_path: Path):
    finished_run(tmp_path, "no-test", make_metrics(0.3, 0.35, role="selection", split="dev"))
    text = format_run_show(find_runs(tmp_path)[0])
    assert "Metrics on dev (selection split, not held-out test; primary: ndcg@10):" in text
    assert "Test metrics" not in text


def test_format_run_show_base_kept_gives_the_verdict(tmp_path: Path):
    finished_run(tmp_path, "worse", make_metrics(0.3, 0.29, chosen="base"))
    text = format_run_show(find_runs(tmp_path)[0])
    assert (
        "Selection: kept the base model: no checkpoint beat it on dev "
        "(dev ndcg@10 best checkpoint 0.3477 vs base 0.3500, -0.0023)"
    ) in text


def test_format_run_show_failed(runs_root: Path):
    text = format_run_show(run_named(runs_root, "fiqa-crashed"))
    assert "Status: failed" in text
    assert "Error: RuntimeError: CUDA out of memory" in text
    assert "  training.epochs = 3" in text
    assert "Metrics: none (the run did not finish)" in text
    assert "Selection" not in text


def test_format_run_show_running(tmp_path: Path):
    text = format_run_show(load_run(started_run(tmp_path, "live")))
    assert "Status: running" in text and "Finished: -" in text
    assert "Metrics: none yet (the run is still training)" in text


def test_format_run_show_dead_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    run = load_run(started_by_dead_process(tmp_path, "killed", monkeypatch))
    text = format_run_show(run)
    assert f"Status: interrupted (recorded as running, but process {run.record.pid} on " in text
    assert "Metrics: none (the run did not finish)" in text


def test_format_run_show_corrupt_record(tmp_path: Path):
    (tmp_path / "run.json").write_text('{"name": "x"')
    text = format_run_show(load_run(tmp_path))
    assert "Status: corrupt" in text
    assert f"Error: {tmp_path / 'run.json'}: not valid JSON" in text
    assert "Config:" not in text


def test_format_run_show_corrupt_metrics(tmp_path: Path):
    folder = finished_run(tmp_path, "fiqa")
    (folder / "metrics.json").write_text('{"primary_metric": 1}')
    text = format_run_show(load_run(folder))
    assert "Status: corrupt" in text
    assert "metrics.json: field 'primary_metric': must be a string" in text
    assert "  training.epochs = 1" in text
    assert "Metrics: none readable (see the error above)" in text


# --- format_run_compare ------------------------------------------------------------------------------------------


def test_format_run_compare(runs_root: Path):
    first, second = run_named(runs_root, "fiqa"), run_named(runs_root, "fiqa-lr5e5")
    text = format_run_compare([first, second])
    assert f"[1] {first.folder} (finished)" in text and f"[2] {second.folder} (finished)" in text
    config_part = text[text.index("Config differences") : text.index("Fine-tuned test metrics")]
    assert config_part.count("\n  training.") == 1  # only the differing key
    lr_row = next(line for line in config_part.splitlines() if "training.learning_rate" in line)
    assert lr_row.split() == ["training.learning_rate", "2e-05", "5e-05"]
    metric_part = text[text.index("Fine-tuned test metrics") :].splitlines()
    assert metric_part[1].split() == ["METRIC", "BASE", "[1]", "[1]", "[2]"]
    rows = {line.split()[0]: line.split()[1:] for line in metric_part[3:]}
    assert rows["split"] == ["test", "test", "test"]
    assert rows["ndcg@10"] == ["0.3000", "0.3456", "0.3612"]
    assert rows["mrr@10"] == ["0.4000", "0.4400", "0.4400"]
    assert "42.2s" in rows["wall"] and "1h" in rows["wall"]


def test_format_run_compare_with_failed_run_and_missing_keys(runs_root: Path, tmp_path: Path):
    other = load_run(finished_run(tmp_path / "other", "bge", config={"model": {"name_or_path": "bge-small"}}))
    text = format_run_compare([run_named(runs_root, "fiqa"), run_named(runs_root, "fiqa-crashed"), other])
    assert "(failed)" in text
    epochs_row = next(line for line in text.splitlines() if "training.epochs" in line)
    assert epochs_row.split() == ["training.epochs", "1", "3", MISSING]
    model_row = next(line for line in text.splitlines() if "model.name_or_path" in line)
    assert model_row.split()[-1] == "bge-small"
    ndcg_row = next(line for line in text.splitlines() if line.strip().startswith("ndcg@10"))
    assert ndcg_row.split() == ["ndcg@10", "0.3000", "0.3456", "-", "0.3456"]


def test_format_run_compare_labels_a_selection_split(runs_root: Path, tmp_path: Path):
    dev_only = load_run(finished_run(tmp_path / "other", "dev", make_metrics(role="selection", split="dev")))
    text = format_run_compare([run_named(runs_root, "fiqa"), dev_only])
    assert "Fine-tuned test metrics" not in text
    assert "Fine-tuned metrics (a selection split is not held-out test):" in text
    split_row = next(line for line in text.splitlines() if line.strip().startswith("split"))
    assert split_row.split() == ["split", "test", "test", "dev", "(selection)"]


def test_format_run_compare_identical_configs(tmp_path: Path):
    a = load_run(finished_run(tmp_path, "a", make_metrics(0.3, 0.31)))
    b = load_run(finished_run(tmp_path, "b", make_metrics(0.3, 0.32)))
    assert "Config differences: none" in format_run_compare([a, b])


def test_format_run_compare_needs_two_runs(runs_root: Path):
    with pytest.raises(ValueError, match="at least 2"):
        format_run_compare([run_named(runs_root, "fiqa")])


def test_show_and_compare_carry_the_seen_unseen_split(tmp_path: Path):
    from dataclasses import replace

    from embedtune.evaluation.seen_unseen import split_comparison

    seen = {f"s{i}" for i in range(20)}
    base = {qid: {"ndcg@10": 0.2} for qid in [*seen, *(f"u{i}" for i in range(10))]}
    tuned = {qid: {"ndcg@10": 0.5 if qid in seen else 0.2} for qid in base}
    record = split_comparison(base, tuned, seen, "ndcg@10")
    root = tmp_path / "runs"
    finished_run(root, "split", replace(make_metrics(), seen_unseen=record))
    finished_run(root, "older", make_metrics())
    split_run, older = run_named(root, "split"), run_named(root, "older")

    assert f"Seen/unseen: {record['verdict']}" in format_run_show(split_run)
    assert "Seen/unseen" not in format_run_show(older)
    rows = {line.split("  ")[1].strip(): line for line in format_run_compare([split_run, older]).splitlines()[-4:]}
    seen_p = f"{record['seen']['p_permutation']:.2g}"
    assert rows["Δ seen queries"].split()[-7:] == ["-", "+0.3000", "(20", "q,", "p", f"{seen_p})", "-"]
    assert rows["Δ unseen queries"].split()[-7:] == ["-", "+0.0000", "(10", "q,", "p", "1)", "-"]
    assert "Δ seen" not in format_run_compare([older, older])  # runs made before the split show no such rows
