"""data.mix: sources loaded beside the run's own data, held-out queries kept out, bad sources named."""

from __future__ import annotations

import json

import pytest

from embedtune.config import ConfigError, build_config
from embedtune.data.mix import load_mix
from embedtune.data.prepare import prepare_data
from embedtune.data.splits import normalize_query
from embedtune.errors import DataError
from tests.conftest import write_noise_beir, write_tiny_beir


def write_file(path, queries: list[str]):
    path.write_text("".join(json.dumps({"query": q, "pos": [f"{q} answer"]}) + "\n" for q in queries))
    return path


def test_folders_and_files_load_with_unique_names_and_held_out_queries_dropped(tmp_path):
    folder = write_tiny_beir(tmp_path / "extra")
    other = write_tiny_beir(tmp_path / "more" / "extra")
    training_file = write_file(tmp_path / "extra.jsonl", ["what is red", "which is fast", "held out query"])

    sources = load_mix([str(folder), str(other), str(training_file)], {normalize_query("Held  out QUERY")}, set())

    assert [source.name for source in sources] == ["extra", "extra_2", "extra_3"]
    assert len(sources[0].examples) == 10  # one per train-qrels query of the folder
    assert [e.query for e in sources[2].examples] == ["what is red", "which is fast"]
    assert sources[0].files[-1] == folder / "qrels" / "train.tsv" and sources[2].files == (training_file,)


def test_a_positive_relevant_to_a_carved_query_is_dropped(tmp_path):
    training_file = write_file(tmp_path / "mix.jsonl", ["what is red", "which is fast"])
    (source,) = load_mix([str(training_file)], set(), {normalize_query("what is red answer")})
    assert [e.query for e in source.examples] == ["which is fast"]


def test_bad_sources_name_the_file(tmp_path):
    no_train = write_tiny_beir(tmp_path / "beir")
    (no_train / "qrels" / "train.tsv").unlink()
    with pytest.raises(DataError, match="needs qrels/train.tsv"):
        load_mix([str(no_train)], set(), set())
    everything_held_out = write_file(tmp_path / "held.jsonl", ["q one"])
    with pytest.raises(DataError, match="no training example left"):
        load_mix([str(everything_held_out)], {"q one"}, set())
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"query": "q", "pos": []}\n')
    with pytest.raises(DataError) as error:
        load_mix([str(broken)], set(), set())
    assert str(broken) in str(error.value) and "pos" in str(error.value)


def test_prepare_data_adds_the_sources_counts_and_files(tmp_path):
    main = write_tiny_beir(tmp_path / "main")
    extra = write_noise_beir(tmp_path / "noise")
    config = build_config(overrides=[f"data.path={main}", f"data.mix={extra}"])
    data = prepare_data(config.data)
    assert [source.name for source in data.mix] == ["noise"]
    assert data.counts["mix_examples"] == 24
    assert extra / "qrels" / "train.tsv" in data.files


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("train.mode=head", "train.mode"),
        ("curriculum.enabled=true", "curriculum.enabled"),
        ("train.group_by_length=true", "train.group_by_length"),
        ("loss.name=cosent", "loss.name"),
    ],
)
def test_settings_that_cannot_mix_are_refused(tmp_path, setting, key):
    with pytest.raises(ConfigError, match=f"{key}: cannot be combined with data.mix"):
        build_config(overrides=[f"data.path={tmp_path}", f"data.mix={tmp_path}", setting])
    with pytest.raises(ConfigError, match="data.mix_sampling: must be one of proportional, round_robin"):
        build_config(overrides=[f"data.path={tmp_path}", "data.mix_sampling=shuffled"])
