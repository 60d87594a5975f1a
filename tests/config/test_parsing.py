"""ExperimentConfig: defaults, validation messages naming the setting, type coercion, files and overrides."""

from __future__ import annotations

import json
import os
import re

import pytest

from embedtune.config import (
    ConfigError,
    ExperimentConfig,
    TrainConfig,
    apply_overrides,
    build_config,
    config_from_dict,
    load_config_file,
)

DATA = {"data": {"path": "beir/scifact"}}


def make(**sections) -> ExperimentConfig:
    return config_from_dict({**DATA, **sections})


# --- overrides are parsed by the type of their setting, never re-read as YAML -------------------------------------


def override(*items: str) -> ExperimentConfig:
    return build_config(None, ["data.path=beir/x", *items])


def test_readme_query_prefix_keeps_its_trailing_space():
    assert override("model.query_prefix=query: ").model.query_prefix == "query: "
    assert override("model.passage_prefix=passage: ").model.passage_prefix == "passage: "


@pytest.mark.parametrize(
    ("item", "section", "key", "expected"),
    [
        ("name=007", None, "name", "007"),
        ("name=2024-01-01", None, "name", "2024-01-01"),
        ("name=true", None, "name", "true"),
        ("name=null", None, "name", "null"),  # a plain str setting takes the text literally
        ("name=[a, b]", None, "name", "[a, b]"),
        ("name=1e3", None, "name", "1e3"),
        ("data.path=/x/b_good #broken", "data", "path", "/x/b_good #broken"),
        ("data.eval_split=a: b", "data", "eval_split", "a: b"),
        ("model.query_prefix=", "model", "query_prefix", ""),
    ],
)
def test_string_overrides_are_literal(item, section, key, expected):
    config = override(item)
    assert getattr(getattr(config, section) if section else config, key) == expected


def test_cli_style_overrides_and_set_give_the_same_strings():
    assert override("name=007").name == "007"
    assert override("name=a=b").name == "a=b"  # only the first '=' separates key and value
    assert override(" name =x").name == "x"  # the key is stripped, the value is not


@pytest.mark.parametrize("word", ["none", "None", "NULL", "null", "~", " none "])
def test_optional_settings_accept_none_words(word):
    config = override(f"model.max_seq_length={word}", f"data.dev_max_corpus={word}", f"data.train_file={word}")
    assert (config.model.max_seq_length, config.data.dev_max_corpus, config.data.train_file) == (None, None, None)
    assert override("data.train_file=t.jsonl", f"data.path={word}").data.path is None


@pytest.mark.parametrize(
    ("word", "expected"),
    [("true", True), ("TRUE", True), ("yes", True), ("On", True), ("1", True)]
    + [("false", False), ("No", False), ("off", False), ("OFF", False), ("0", False)],
)
def test_bool_words(word, expected):
    config = override(
        f"loss.symmetric={word}", f"train.log_grad_histograms={word}", f"train.log_module_grad_norms={word}"
    )
    assert config.loss.symmetric is expected
    assert config.train.log_grad_histograms is expected and config.train.log_module_grad_norms is expected


@pytest.mark.parametrize("word", ["maybe", "2", "", "y", "t"])
def test_bad_bool_words_are_rejected(word):
    with pytest.raises(ConfigError, match=r"^loss\.symmetric:"):
        override(f"loss.symmetric={word}")


def test_list_override_is_comma_separated():
    assert override("eval.metrics=ndcg@10, recall@5").eval.metrics == ["ndcg@10", "recall@5"]
    with pytest.raises(ConfigError, match=r"^eval\.metrics:"):
        override("eval.metrics=")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("train.batch_size=16", 16),
        ("train.batch_size=3.0", 3),
        ("train.batch_size= 8 ", 8),
        ("train.batch_size=1e1", 10),
    ],
)
def test_int_settings_parse_strictly(item, expected):
    assert override(item).train.batch_size == expected


@pytest.mark.parametrize("value", ["8.5", "abc", "0x10", "1_000", "8 8", "", "[8]", "true", "9" * 5000])
def test_bad_ints_are_rejected(value):
    with pytest.raises(ConfigError) as error:
        override(f"train.batch_size={value}")
    assert str(error.value).startswith("train.batch_size:")
    assert len(str(error.value)) < 200  # the quoted value is capped


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "+Infinity", "1e999", "-1e999", "9" * 400, "+-inf"])
@pytest.mark.parametrize("key", ["loss.scale", "train.learning_rate", "train.epochs", "data.dev_fraction"])
def test_non_finite_numbers_are_rejected(key, value):
    with pytest.raises(ConfigError) as error:
        override(f"{key}={value}")
    assert str(error.value).startswith(f"{key}:")
    assert len(str(error.value)) < 200


def test_non_finite_numbers_are_rejected_from_json_and_direct_construction(tmp_path):
    path = tmp_path / "c.json"
    for number in ["NaN", "Infinity", "1e999"]:
        path.write_text(f'{{"train": {{"learning_rate": {number}}}}}')
        with pytest.raises(ConfigError, match=r"train\.learning_rate: must be a finite number"):
            load_config_file(path)
    with pytest.raises(ConfigError, match=r"^train\.learning_rate:"):
        TrainConfig(learning_rate=float("nan"))
    with pytest.raises(ConfigError, match=r"^train\.max_steps:"):
        override("train.max_steps=1e999")


@pytest.mark.parametrize("key", ["data.split_seed", "train.seed"])
def test_seeds_are_32_bit_unsigned_integers(key):
    section, name = key.split(".")
    for good in [0, 2**32 - 1, 42]:
        assert getattr(getattr(override(f"{key}={good}"), section), name) == good
    for bad in [-1, 2**32, 10**30, "1.5", "nan"]:
        with pytest.raises(ConfigError) as error:
            override(f"{key}={bad}")
        assert str(error.value).startswith(f"{key}:"), str(error.value)


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ("trian.epochs=1", "trian.epochs"),
        ("train.lerning_rate=1e-5", "train.lerning_rate"),
        ("model.name=x", "model.name"),
        ("nmae=x", "nmae"),
        ("train..seed=1", "train..seed"),
        (".seed=1", ".seed"),
    ],
)
def test_unknown_override_keys_are_named_with_known_keys(item, key):
    with pytest.raises(ConfigError) as error:
        override(item)
    message = str(error.value)
    assert message.startswith(f"{key}:") and "unknown" in message
    assert "known" in message


def test_unknown_key_lists_the_keys_of_its_section():
    with pytest.raises(ConfigError) as error:
        override("train.lerning_rate=1e-5")
    assert "learning_rate" in str(error.value) and "warmup_ratio" in str(error.value)
    with pytest.raises(ConfigError) as error:
        override("trian.epochs=1")
    assert "train" in str(error.value) and "runs_dir" in str(error.value)


@pytest.mark.parametrize(
    ("item", "key"),
    [("train=5", "train"), ("model=x", "model"), ("name.x=1", "name.x"), ("train.seed.a=1", "train.seed.a")],
)
def test_override_keys_that_address_a_section_or_go_below_a_setting(item, key):
    with pytest.raises(ConfigError) as error:
        override(item)
    assert str(error.value).startswith(f"{key}:"), str(error.value)


@pytest.mark.parametrize("bad", ["noequals", "=x", " =x", "train.seed"])
def test_malformed_overrides(bad):
    with pytest.raises(ConfigError, match="expected section.key=value"):
        apply_overrides({}, [bad])


def test_apply_overrides_does_not_mutate_nested_input():
    data = {"train": {"seed": 1}, "model": {"query_prefix": "q"}}
    result = apply_overrides(data, ["train.batch_size=4"])
    assert data == {"train": {"seed": 1}, "model": {"query_prefix": "q"}}
    assert result["train"] == {"seed": 1, "batch_size": "4"}
    with pytest.raises(ConfigError):
        apply_overrides({}, "train.seed=1")  # a bare string, not a list


# --- config files --------------------------------------------------------------------------------------------------


def write(tmp_path, text: str | bytes, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    ("line", "expected"),
    [("name: 007", "007"), ("name: 2024-01-01", "2024-01-01"), ("name: no", "no"), ("name: 1.0", "1.0")]
    + [("name: null", "null"), ("name: '0x1F'", "0x1F"), ("name: 1e3", "1e3")],
)
def test_yaml_scalars_never_change_type_behind_the_users_back(tmp_path, line, expected):
    path = write(tmp_path, f"{line}\ndata:\n  path: x\n")
    assert load_config_file(path)["name"] == expected
    assert build_config(path).name == expected


def test_yaml_values_are_coerced_by_type(tmp_path):
    text = (
        "data:\n  path: x\n  train_file: ~\n  dev_max_corpus:\n  split_seed: 7\n"
        "model:\n  query_prefix: 'query: '\n  max_seq_length: Null\n"
        "loss:\n  symmetric: no\n  scale: 1e1\n"
        "train:\n  log_grad_histograms: on\n  batch_size: 3.0\n"
        "eval:\n  metrics: [ndcg@10, recall@5]\n"
    )
    config = build_config(write(tmp_path, text))
    assert (config.data.train_file, config.data.dev_max_corpus, config.model.max_seq_length) == (None, None, None)
    assert config.data.split_seed == 7 and config.model.query_prefix == "query: "
    assert config.loss.symmetric is False and config.loss.scale == 10.0
    assert config.train.log_grad_histograms is True and config.train.batch_size == 3
    assert config.eval.metrics == ["ndcg@10", "recall@5"]


def test_json_typed_values_are_coerced(tmp_path):
    path = write(tmp_path, json.dumps({"name": 7, "data": {"path": "x", "split_seed": 3.0}}), "c.json")
    config = build_config(path)
    assert config.name == "7" and config.data.split_seed == 3
    for bad, key in [
        ({"train": {"batch_size": True}}, "train.batch_size"),
        ({"loss": {"scale": False}}, "loss.scale"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {key}:"):
            load_config_file(path)


def test_file_values_override_defaults_and_overrides_win(tmp_path):
    path = write(tmp_path, "name: from-file\ndata:\n  path: x\ntrain:\n  seed: 5\n")
    config = build_config(path, ["train.seed=6", "name=007"])
    assert (config.name, config.train.seed, config.train.batch_size) == ("007", 6, TrainConfig().batch_size)


BAD_FILES = [
    ("missing", None, "not found"),
    ("folder", None, "folder"),
    ("bad-utf8", b"name: \xff\xfe\n", "UTF-8"),
    ("yaml-syntax", "name: [unclosed\n", "cannot parse YAML"),
    ("yaml-tab", "name:\n\tx: 1\n", "cannot parse YAML"),
    ("json-syntax", "{not json", "cannot parse JSON"),
    ("json-deep", "[" * 100000, "nested too deeply"),
    ("yaml-deep-flow", "[" * 100000, "nested deeper"),
    ("yaml-deep-block", "a:\n" + "".join(" " * (i + 1) + "b:\n" for i in range(200)), "nested deeper"),
    ("yaml-list", "- a\n- b\n", "mapping"),
    ("yaml-scalar", "just text\n", "mapping"),
    ("json-list", "[1, 2]", "mapping"),
    ("empty", "", "got an empty file"),
    ("comment-only", "# nothing\n", "got an empty file"),
    ("nested-mapping", "name:\n  a: 1\n", "name: expected a string, got a mapping"),
    ("list-for-scalar", "train:\n  seed: [1, 2]\n", "train.seed: expected an integer, got a list"),
    ("section-scalar", "train: 5\n", "train: expected a mapping"),
    ("unknown-key", "trian:\n  seed: 1\n", "trian: unknown setting"),
    ("yaml-duplicate", "name: a\nname: b\n", "duplicate key 'name'"),
    ("json-duplicate", '{"name": "a", "name": "b"}', "duplicate key 'name'"),
    ("yaml-recursive", "eval:\n  metrics: &a [*a]\n", "cannot parse YAML"),
    ("yaml-two-documents", "name: a\n---\nname: b\n", "cannot parse YAML"),
    ("json-bool-number", '{"train": {"seed": true}}', "train.seed:"),
    ("huge-value", "name: [" + "x" * 100000 + "]\n", "name: expected a string"),
    ("nul-char", "name: a\x00b\n", "cannot parse YAML"),
]


@pytest.mark.parametrize(("case", "text", "reason"), BAD_FILES, ids=[case for case, _, _ in BAD_FILES])
def test_bad_config_files_give_one_error_starting_with_the_path(tmp_path, case, text, reason):
    suffix = ".json" if case.startswith("json") else ".yaml"
    if case == "missing":
        path = tmp_path / "missing.yaml"
    elif case == "folder":
        path = tmp_path / "folder.yaml"
        path.mkdir()
    else:
        path = write(tmp_path, text, f"config{suffix}")
    with pytest.raises(ConfigError) as error:
        build_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert reason in message, message
    assert len(message) < 600 and "Traceback" not in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_config_file(tmp_path):
    path = write(tmp_path, "name: a\n")
    path.chmod(0)
    try:
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: cannot read: Permission denied"):
            load_config_file(path)
    finally:
        path.chmod(0o600)


def test_config_file_path_edge_cases(tmp_path):
    with pytest.raises(ConfigError, match="config file"):
        build_config("")
    with pytest.raises(ConfigError, match="bad path"):
        load_config_file(str(tmp_path / "a\0b.yaml"))
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config_file("/dev/null")
    long_name = tmp_path / ("x" * 300 + ".yaml")
    with pytest.raises(ConfigError, match="cannot read|not found"):
        load_config_file(long_name)


def test_json_suffix_is_case_insensitive_and_bom_is_accepted(tmp_path):
    path = write(tmp_path, b'\xef\xbb\xbf{"name": "bom", "data": {"path": "x"}}', "C.JSON")
    assert build_config(path).name == "bom"


# --- paths, names and the remaining fields -------------------------------------------------------------------------


def test_tilde_is_expanded_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = build_config(
        None, ["data.path=~/beir", "data.train_file=~/t.jsonl", "runs_dir=~/runs", "model.name_or_path=~/model"]
    )
    assert config.data.path == str(tmp_path / "beir")
    assert config.data.train_file == str(tmp_path / "t.jsonl")
    assert config.runs_dir == str(tmp_path / "runs")
    assert config.model.name_or_path == str(tmp_path / "model")
    assert override("model.name_or_path=org/model~1").model.name_or_path == "org/model~1"
    path = write(tmp_path, "data:\n  path: ~/from-file\n")
    assert build_config(path).data.path == str(tmp_path / "from-file")


@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_empty_runs_dir_is_rejected(value):
    with pytest.raises(ConfigError, match=r"^runs_dir: must not be empty"):
        override(f"runs_dir={value}")


@pytest.mark.parametrize(("key", "value"), [("data.path", ""), ("data.train_file", " "), ("model.name_or_path", "")])
def test_empty_paths_are_rejected(key, value):
    with pytest.raises(ConfigError, match=rf"^{key}: must not be empty"):
        override(f"{key}={value}")


@pytest.mark.parametrize(
    "name", ["", "  ", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "x" * 300, "x" * 101, "é" * 101, "😀" * 60]
)
def test_bad_names_are_rejected(name):
    with pytest.raises(ConfigError) as error:
        make(name=name)
    assert str(error.value).startswith("name:")
    assert len(str(error.value)) < 200


@pytest.mark.parametrize("name", ["x" * 100, "exp 1", "007", "é" * 100, "run.v2", "..a"])
def test_good_names_are_accepted(name):
    assert make(name=name).name == name


def test_new_fields_keep_their_defaults_and_are_validated():
    from embedtune.losses.registry import names

    config = make()
    assert config.data.test_fraction == 0.1 and config.loss.name == "infonce"
    assert set(names()) == {"infonce", "mnrl", "cosent", "cosine_mse", "margin_mse", "distill_kl"}
    assert config.train.log_module_grad_norms is False and config.train.log_grad_histograms is False
    assert config.train.warmup_ratio == 0.1
    assert make(data={"path": "x", "test_fraction": 0}).data.test_fraction == 0.0
    for bad in [1, -0.1, "nan"]:
        with pytest.raises(ConfigError, match=r"^data\.test_fraction:"):
            make(data={"path": "x", "test_fraction": bad})
    with pytest.raises(ConfigError, match=r"^loss\.name: must be one of"):
        make(loss={"name": "triplet"})


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (TrainConfig, {"batch_size": "many"}, "train.batch_size"),
        (TrainConfig, {"seed": True}, "train.seed"),
        (TrainConfig, {"learning_rate": [1]}, "train.learning_rate"),
        (TrainConfig, {"gradient_checkpointing": 2}, "train.gradient_checkpointing"),
        (ExperimentConfig, {"name": ["a"]}, "name"),
        (ExperimentConfig, {"model": 5}, "model"),
        (ExperimentConfig, {"model": {"nmae": "x"}}, "model.nmae"),
    ],
)
def test_direct_construction_checks_types(cls, kwargs, key):
    with pytest.raises(ConfigError) as error:
        cls(**kwargs)
    assert str(error.value).startswith(f"{key}:")


def test_direct_construction_parses_by_type_like_overrides():
    train = TrainConfig(batch_size="8", learning_rate=1, gradient_checkpointing="yes")
    assert train.batch_size == 8 and train.learning_rate == 1.0 and isinstance(train.learning_rate, float)
    assert train.gradient_checkpointing is True
    config = ExperimentConfig(model={"name_or_path": "x"}, data={"path": "p"})
    assert config.model.name_or_path == "x" and config.data.path == "p"


def test_wrong_kinds_from_dicts_name_the_key():
    for sections, key in [
        ({"name": ["a"]}, "name"),
        ({"name": {"a": 1}}, "name"),
        ({"loss": {"scale": [1]}}, "loss.scale"),
    ]:
        with pytest.raises(ConfigError, match=rf"^{key}: expected"):
            make(**sections)
