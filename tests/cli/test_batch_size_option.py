"""``--batch-size`` of eval, mine, index build and export: a positive integer, or left out for the device's size."""

from __future__ import annotations

import pytest

from embedtune.cli import build_parser

COMMANDS = {
    "eval": ["eval", "--model", "m", "--data", "d"],
    "mine": ["mine", "d", "out.jsonl"],
    "index build": ["index", "build", "--model", "m", "--corpus", "corpus.jsonl", "out"],
    "export": ["export", "run", "out"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_left_out_it_is_none_and_a_number_is_kept(command):
    parser = build_parser()
    assert parser.parse_args(COMMANDS[command]).batch_size is None
    assert parser.parse_args([*COMMANDS[command], "--batch-size", "16"]).batch_size == 16


@pytest.mark.parametrize("value", ["0", "-3", "many"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_anything_but_a_positive_integer_is_one_usage_error(command, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*COMMANDS[command], "--batch-size", value])
    assert exit_info.value.code == 2
    assert f"--batch-size: must be a positive integer, got '{value}'" in capsys.readouterr().err
