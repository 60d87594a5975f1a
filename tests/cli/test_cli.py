import json

import pytest

from embedtune import runs
from embedtune.cli import build_parser, main


@pytest.mark.parametrize(
    "argv", [[], ["train"], ["eval"], ["runs"], ["runs", "list"], ["runs", "show"], ["runs", "compare"], ["demo"]]
)
def test_every_command_has_help(argv, capsys):
    assert main([*argv, "--help"]) == 0
    assert "usage: embedtune" in capsys.readouterr().out


def test_parser_lists_all_commands():
    help_text = build_parser().format_help()
    for command in ("train", "eval", "runs", "demo"):
        assert command in help_text


def train_args(model_dir, data_dir, runs_dir, name, *extra):
    return [
        "train", "--data", str(data_dir), "--model", str(model_dir), "--name", name, "--runs-dir", str(runs_dir),
        "--epochs", "1", "--batch-size", "4", "--set", "data.dev_fraction=0.2", "--set", "train.logging_steps=1",
        *extra,
    ]  # fmt: skip


def test_train_prints_one_line_per_event_and_a_summary(tiny_model_dir, tiny_beir, tmp_path, capsys):
    assert main(train_args(tiny_model_dir, tiny_beir, tmp_path / "runs", "first")) == 0
    captured = capsys.readouterr()
    assert captured.out.count("metric (test)") == 1  # the table, once
    assert captured.err.count("step 1/2 epoch") == 1  # each training log line, once
    assert captured.err.count("dev (untouched model)") == 1
    folder = next((tmp_path / "runs").glob("*-first"))
    for line in (f"Run folder: {folder}", f"Model:      {folder / 'model'}", "Verdict:    fine-tuning", "Next:"):
        assert line in captured.out
    assert "Traceback" not in captured.err and "Warning" not in captured.err


def test_train_then_runs_list_show_compare_and_eval(tiny_model_dir, tiny_beir, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    assert main(train_args(tiny_model_dir, tiny_beir, runs_dir, "first")) == 0
    assert main([*train_args(tiny_model_dir, tiny_beir, runs_dir, "second"), "--lr", "1e-3"]) == 0
    capsys.readouterr()

    assert main(["runs", "--runs-dir", str(runs_dir), "list"]) == 0
    listing = capsys.readouterr().out
    assert "-first" in listing and "-second" in listing and "finished" in listing

    assert main(["runs", "list", "--runs-dir", str(runs_dir)]) == 0  # after the action too, as other commands
    assert capsys.readouterr().out == listing
    assert main(["runs", "list", "--runs-dir", str(tmp_path / "elsewhere")]) == 2
    assert "runs folder" in capsys.readouterr().err

    assert main(["runs", "--runs-dir", str(runs_dir), "show", "first"]) == 0
    shown = capsys.readouterr().out
    assert main(["runs", "show", "first", "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out == shown
    first = next(runs_dir.glob("*-first"))
    metrics = json.loads((first / "metrics.json").read_text())
    assert f"{metrics['report']['fine_tuned']['ndcg@10']:.4f}" in shown

    assert main(["runs", "--runs-dir", str(runs_dir), "compare", "first", "second"]) == 0
    compared = capsys.readouterr().out
    assert "train.learning_rate" in compared and "0.001" in compared
    assert "train.batch_size" not in compared

    eval_args = ["eval", "--model", "first", "--runs-dir", str(runs_dir), "--data", str(tiny_beir)]
    assert main([*eval_args, "--baseline", str(tiny_model_dir)]) == 0
    table = capsys.readouterr().out
    assert f"{metrics['report']['fine_tuned']['ndcg@10']:.4f}" in table
    assert f"{metrics['report']['base']['ndcg@10']:.4f}" in table


def test_flag_and_set_values_are_taken_literally(tiny_model_dir, tiny_beir, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    argv = train_args(tiny_model_dir, tiny_beir, runs_dir, "007", "--set", "model.query_prefix=query: ")
    assert main(argv) == 0
    [folder] = list(runs_dir.iterdir())
    record = runs.load_run(folder).record
    assert record.name == "007" and folder.name.endswith("-007")
    assert record.config["model"]["query_prefix"] == "query: "


def test_bad_data_gives_one_clear_error_and_exit_code_2(tiny_model_dir, tiny_beir, tmp_path, capsys):
    (tiny_beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq10\tv0\tmany\n")
    code = main(train_args(tiny_model_dir, tiny_beir, tmp_path / "runs", "bad"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "test.tsv:2" in err and "score" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--set", "train.warmup_ratio=2", "train.warmup_ratio"),
        ("--set", "train.seed=-1", "train.seed"),
        ("--set", "loss.scale=inf", "loss.scale"),
        ("--name", "x" * 300, "name"),
        ("--runs-dir", "", "runs_dir"),
    ],
)
def test_bad_setting_names_the_setting(tiny_model_dir, tiny_beir, tmp_path, capsys, flag, value, expected):
    argv = ["train", "--data", str(tiny_beir), "--model", str(tiny_model_dir), "--runs-dir", str(tmp_path / "r")]
    assert main([*argv, flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_runs_dir_under_a_file_is_one_line_before_any_model_loads(tiny_beir, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    argv = ["train", "--data", str(tiny_beir), "--model", str(tmp_path / "missing"), "--runs-dir"]
    assert main([*argv, str(tmp_path / "afile" / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "afile" in err and "Traceback" not in err


def test_a_bad_model_leaves_no_run_folder(tiny_beir, tmp_path, capsys):
    assert main(train_args(tmp_path / "no-model", tiny_beir, tmp_path / "runs", "x")) == 2
    assert "no-model" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_check_validates_and_creates_nothing(tiny_model_dir, tiny_beir, tmp_path, capsys):
    assert main([*train_args(tiny_model_dir, tiny_beir, tmp_path / "runs", "x"), "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and "test.tsv" in out
    assert not (tmp_path / "runs").exists()


def test_a_corrupt_run_does_not_break_runs_list(tiny_model_dir, tiny_beir, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    assert main(train_args(tiny_model_dir, tiny_beir, runs_dir, "good")) == 0
    broken = runs_dir / "20200101-000000-broken"
    broken.mkdir()
    (broken / runs.RUN_FILE).write_text("{not json")
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs_dir), "list"]) == 0
    listing = capsys.readouterr().out
    assert "-good" in listing and "finished" in listing and "corrupt" in listing


def test_runs_compare_needs_two_runs(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path), "compare", "only-one"]) == 2


def test_train_help_lists_every_setting_with_its_default(capsys):
    import dataclasses

    from embedtune.cli import main
    from embedtune.config import DataConfig, LossConfig, TrainConfig

    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for section, cls in (("data", DataConfig), ("loss", LossConfig), ("train", TrainConfig)):
        for field in dataclasses.fields(cls):
            assert f"  {section}.{field.name} (" in text, field.name
    assert "  loss.matryoshka_dims ([768, 512, 256, 128, 64]): " in text
