from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.runs import (
    Report,
    RunMetrics,
    RunRecord,
    RunRecordError,
    Selection,
    read_run_metrics,
    read_run_record,
)
from tests.runs.factories import finished_run, make_metrics


def test_metrics_round_trip():
    metrics = make_metrics(role="selection", split="dev", chosen="base")
    assert RunMetrics.from_dict(json.loads(json.dumps(metrics.to_dict())), "metrics.json") == metrics


def test_written_records_read_back_as_the_same_dataclasses(tmp_path: Path):
    folder = finished_run(tmp_path, "fiqa")
    record = read_run_record(folder)
    assert isinstance(record, RunRecord)
    assert RunRecord.from_dict(record.to_dict(), "x") == record
    assert read_run_metrics(folder) == make_metrics()


def test_to_dict_has_the_schema_keys(tmp_path: Path):
    record = read_run_record(finished_run(tmp_path, "fiqa"))
    assert list(record.to_dict()) == [
        "name",
        "created",
        "status",
        "finished",
        "error",
        "pid",
        "host",
        "config",
        "versions",
        "data_hashes",
        "git_commit",
        "command",
    ]
    assert list(make_metrics().to_dict()) == [
        "primary_metric",
        "report",
        "selection",
        "dev_history",
        "loss_history",
        "splits",
        "num_train_examples",
        "wall_time_s",
        "train_time_s",
        "peak_memory_mb",
        "significance",
        "extra_reports",
        "pair_diagnostics",
        "curriculum",
        "trainable_parameters",
        "seen_unseen",
    ]
    assert list(make_metrics().to_dict()["report"]) == ["split", "role", "base", "fine_tuned"]


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (lambda d: d["report"]["base"].update({"ndcg@10": "high"}), "report.base.ndcg@10", "must be a number"),
        (lambda d: d["report"].update(role="train"), "report.role", "must be one of selection, test"),
        (lambda d: d["selection"].update(chosen="both"), "selection.chosen", "must be one of"),
        (lambda d: d["selection"].update(step=1.5), "selection.step", "must be an integer"),
        (lambda d: d.pop("primary_metric"), "primary_metric", "is missing"),
        (lambda d: d["dev_history"].append({"step": 300}), "dev_history[2].epoch", "is missing"),
        (lambda d: d["loss_history"][0].update(step=True), "loss_history[0].step", "must be an integer"),
        (lambda d: d["splits"].update(dev=-1), "splits.dev", "must be at least 0"),
        (lambda d: d.update(wall_time_s=float("inf")), "wall_time_s", "finite"),
        (lambda d: d.update(report=[1]), "report", "must be a JSON object, got array"),
    ],
)
def test_metrics_from_dict_names_file_and_field(change, field, problem):
    data = make_metrics().to_dict()
    change(data)
    with pytest.raises(RunRecordError, match=problem) as info:
        RunMetrics.from_dict(data, Path("runs/x/metrics.json"))
    assert info.value.field == field
    assert info.value.path == Path("runs/x/metrics.json")
    assert str(info.value).startswith(f"runs/x/metrics.json: field {field!r}: ")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(status="done"), "status"),
        (lambda d: d.update(created="yesterday"), "created"),
        (lambda d: d.update(pid="123"), "pid"),
        (lambda d: d.update(pid=0), "pid"),
        (lambda d: d.update(config=None), "config"),
        (lambda d: d["versions"].update(torch=2.3), "versions.torch"),
        (lambda d: d.update(error=["x"]), "error"),
        (lambda d: d.pop("host"), "host"),
    ],
)
def test_record_from_dict_names_file_and_field(tmp_path: Path, change, field):
    data = read_run_record(finished_run(tmp_path, "fiqa")).to_dict()
    change(data)
    with pytest.raises(RunRecordError) as info:
        RunRecord.from_dict(data, "run.json")
    assert info.value.field == field
    assert f"field {field!r}" in str(info.value)


def test_record_ignores_unknown_keys_and_treats_missing_nullable_as_none(tmp_path: Path):
    data = read_run_record(finished_run(tmp_path, "fiqa")).to_dict()
    data["added_by_a_newer_writer"] = 1
    del data["error"], data["git_commit"]
    record = RunRecord.from_dict(data, "run.json")
    assert record.error is None and record.git_commit is None


def test_record_that_is_not_an_object():
    with pytest.raises(RunRecordError, match=r"^run\.json: must be a JSON object, got array"):
        RunRecord.from_dict([], "run.json")


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"{not json", "not valid JSON"), (b"\xff\xfe", "not valid UTF-8"), (b"", "not valid JSON")],
)
def test_read_run_record_bad_file(tmp_path: Path, content: bytes, problem: str):
    (tmp_path / "run.json").write_bytes(content)
    with pytest.raises(RunRecordError, match=problem) as info:
        read_run_record(tmp_path)
    assert info.value.path == tmp_path / "run.json" and info.value.field is None


def test_read_run_record_missing_file(tmp_path: Path):
    with pytest.raises(RunRecordError, match="run.json: file not found"):
        read_run_record(tmp_path)


def test_report_and_selection_constructors():
    report = Report(split="dev", role="selection", base={"ndcg@10": 0.5}, fine_tuned={"ndcg@10": 0.6})
    assert not report.is_held_out
    selection = Selection(chosen="base", step=None, base_dev=0.5, best_dev=0.4, delta=-0.1, verdict="kept base")
    assert Selection.from_dict(selection.to_dict(), "m.json") == selection


def test_extra_reports_round_trip_and_old_metrics_without_them_still_load(tmp_path: Path):
    from dataclasses import replace

    from embedtune.runs.errors import RunRecordError
    from embedtune.runs.record import ExtraReport, RunMetrics

    extra = ExtraReport("ood", "test", {"ndcg@10": 0.5}, {"ndcg@10": 0.45}, drop=0.05, forgetting=True)
    metrics = replace(make_metrics(), extra_reports=[extra], significance={"p_permutation": 0.01})
    data = metrics.to_dict()
    assert RunMetrics.from_dict(data, tmp_path / "metrics.json") == metrics
    for key in ("significance", "extra_reports", "pair_diagnostics"):
        data.pop(key)
    assert RunMetrics.from_dict(data, tmp_path / "metrics.json").extra_reports == []
    bad = metrics.to_dict()
    bad["extra_reports"][0]["forgetting"] = "yes"
    with pytest.raises(RunRecordError, match=r"extra_reports\[0\]\.forgetting"):
        RunMetrics.from_dict(bad, tmp_path / "metrics.json")
