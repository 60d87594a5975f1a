import json

import pytest

from embedtune.cli import build_parser, main


@pytest.mark.parametrize(
    "argv", [[], ["train"], ["eval"], ["runs"], ["runs", "list"], ["runs", "show"], ["runs", "compare"], ["demo"]]
)
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: embedtune" in capsys.readouterr().out


def test_parser_lists_all_commands():
    help_text = build_parser().format_help()
    for command in ("train", "eval", "runs", "demo"):
        assert command in help_text


def train_args(model_dir, data_dir, runs_dir, name):
    return [
        "train", "--data", str(data_dir), "--model", str(model_dir), "--name", name, "--runs-dir", str(runs_dir),
        "--epochs", "1", "--batch-size", "4", "--set", "data.dev_fraction=0.2",
    ]  # fmt: skip


def test_train_then_runs_list_show_compare_and_eval(tiny_model_dir, tiny_beir, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    assert main(train_args(tiny_model_dir, tiny_beir, runs_dir, "first")) == 0
    out = capsys.readouterr().out
    assert "base" in out and "fine-tuned" in out and "ndcg@10" in out
    assert main([*train_args(tiny_model_dir, tiny_beir, runs_dir, "second"), "--lr", "1e-3"]) == 0
    capsys.readouterr()

    assert main(["runs", "--runs-dir", str(runs_dir), "list"]) == 0
    listing = capsys.readouterr().out
    assert "-first" in listing and "-second" in listing

    assert main(["runs", "--runs-dir", str(runs_dir), "show", "first"]) == 0
    shown = capsys.readouterr().out
    first = next(runs_dir.glob("*-first"))
    metrics = json.loads((first / "metrics.json").read_text())
    assert f"{metrics['test']['fine_tuned']['ndcg@10']:.4f}" in shown

    assert main(["runs", "--runs-dir", str(runs_dir), "compare", "first", "second"]) == 0
    compared = capsys.readouterr().out
    assert "train.learning_rate" in compared and "0.001" in compared
    assert "train.batch_size" not in compared

    model_dir = first / "model"
    assert main(["eval", "--model", str(model_dir), "--data", str(tiny_beir), "--baseline", str(tiny_model_dir)]) == 0
    table = capsys.readouterr().out
    assert f"{metrics['test']['fine_tuned']['ndcg@10']:.4f}" in table
    assert f"{metrics['test']['base']['ndcg@10']:.4f}" in table


def test_bad_data_gives_one_clear_error_and_exit_code_2(tiny_model_dir, tiny_beir, tmp_path, capsys):
    (tiny_beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq10\tv0\tmany\n")
    code = main(train_args(tiny_model_dir, tiny_beir, tmp_path / "runs", "bad"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "test.tsv:2" in err and "score" in err
    assert not (tmp_path / "runs").exists()


def test_bad_setting_names_the_setting(tiny_beir, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_beir), "--runs-dir", str(tmp_path), "--set", "train.warmup_ratio=2"])
    assert code == 2
    assert "train.warmup_ratio" in capsys.readouterr().err


def test_runs_compare_needs_two_runs(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path), "compare", "only-one"]) == 2
