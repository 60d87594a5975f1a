"""Property-based tests: generated data files, configs and flags fed to ``embedtune train``.

Whatever the input, the command ends with exit code 0 or 2 and at most one ``error:`` line (never a traceback), and
no run folder exists afterwards: the model loader is replaced by a stub that refuses to load, so an input that
passes validation stops exactly where the real run would load the model — before any folder is created.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedtune.cli import main
from embedtune.models.loading import ModelNotFoundError
from embedtune.training import pipeline

CASES = settings(
    max_examples=500,
    derandomize=True,  # seeded: the same cases every run
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STUB_MESSAGE = "stub model loader: validation passed"
reached_model = {"count": 0}
cases_run = {"count": 0}


@pytest.fixture(autouse=True)
def stub_model_loader(monkeypatch):
    def refuse(*args, **kwargs):
        reached_model["count"] += 1
        raise ModelNotFoundError(STUB_MESSAGE)

    monkeypatch.setattr(pipeline, "load_model", refuse)


words = st.sampled_from(["apple", "pear", "car", "road", "", " ", "\t", "é", "한국어", "\x00", "\ufeff", "#", ":"])
text = st.one_of(st.lists(words, min_size=1, max_size=4).map(" ".join), st.text(max_size=12))
json_scalar = st.one_of(
    text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e39, 1e-50, 0.5, 2.0, -1.0, 0.0, True, None]),
)
json_value = st.recursive(
    json_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3)
)
weight = st.one_of(st.floats(min_value=0.1, max_value=10.0), json_scalar)


good_text = st.lists(st.sampled_from(["apple", "pear", "car", "road", "한국어", "sweet"]), min_size=1, max_size=3).map(
    " ".join
)


@st.composite
def broken_record(draw) -> dict:
    record = {"query": draw(st.one_of(text, json_value)), "pos": draw(st.lists(text, min_size=1, max_size=2))}
    if draw(st.booleans()):
        negatives = draw(st.lists(text, max_size=2))
        record["neg"] = negatives
        if draw(st.booleans()):
            record["neg_weights"] = draw(st.lists(weight, min_size=len(negatives), max_size=len(negatives) + 1))
    if draw(st.integers(0, 9)) == 0:
        record[draw(st.sampled_from(["query", "pos", "neg", "neg_weights"]))] = draw(json_value)
    return record


@st.composite
def valid_record(draw) -> dict:
    record = {"query": draw(good_text), "pos": draw(st.lists(good_text, min_size=1, max_size=2))}
    negatives = draw(st.lists(good_text, max_size=2))
    if negatives:
        record["neg"] = negatives
        if draw(st.booleans()):
            record["neg_weights"] = draw(
                st.lists(st.floats(0.01, 100.0), min_size=len(negatives), max_size=len(negatives))
            )
    return record


bad_line = st.one_of(
    st.sampled_from(["[" * 5000, "{", "null", "[]", '"x"', "1" * 5000, "\xff"]),
    st.text(max_size=20),
    broken_record().map(json.dumps),
)


@st.composite
def training_file(draw) -> str:
    lines = [
        json.dumps(record, ensure_ascii=draw(st.booleans())) for record in draw(st.lists(valid_record(), max_size=14))
    ]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):  # half the files hold one or two bad lines
        lines.insert(draw(st.integers(0, len(lines))), draw(bad_line))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))


def run_train(tmp: Path, *args: str) -> int:
    return main(["train", "--runs-dir", str(tmp / "runs"), "--model", str(tmp / "model"), *args])


def assert_clean_outcome(code: int, capsys, tmp: Path) -> None:
    cases_run["count"] += 1
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == (1 if code else 0), err
    assert len(errors[0]) < 1000 if errors else True
    assert not (tmp / "runs").exists() or not any((tmp / "runs").iterdir()), "a run folder was created"


@CASES
@given(content=training_file(), dev_fraction=st.sampled_from(["0.2", "0.5", "0.9"]))
def test_generated_training_files(content, dev_fraction, capsys):
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        path = tmp / "train.jsonl"
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
        code = run_train(tmp, "--train-file", str(path), "--set", f"data.dev_fraction={dev_fraction}")
        assert_clean_outcome(code, capsys, tmp)


@st.composite
def qrels_file(draw) -> str:
    valid_header = "query-id\tcorpus-id\tscore"
    header = draw(st.sampled_from([valid_header] * 6 + ["query-id corpus-id score", "", "q\td\ts"]))
    rows = [f"q{i}\td{i % 3}\t1" for i in draw(st.sets(st.integers(0, 4), max_size=5))]
    for _ in range(draw(st.integers(0, 2))):
        query = draw(st.sampled_from(["q0", "q1", "q2", "q3", "q4", "missing", ""]))
        doc = draw(st.sampled_from(["d0", "d1", "d2", "nope"]))
        score = draw(st.one_of(st.integers(-3, 3).map(str), st.sampled_from(["1.5", "x", "99999999999", "-0", ""])))
        cells = [query, doc, score] + draw(st.lists(text, max_size=1))
        rows.append("\t".join(cells))
    return "\n".join([header, *rows]) + "\n"


@CASES
@given(train=qrels_file(), test=qrels_file(), corpus_extra=st.lists(json_value, max_size=2))
def test_generated_beir_folders(train, test, corpus_extra, capsys):
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        data = tmp / "beir"
        (data / "qrels").mkdir(parents=True)
        docs = [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(3)] + corpus_extra
        (data / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        queries = "".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(5))
        (data / "queries.jsonl").write_text(queries)
        (data / "qrels" / "train.tsv").write_text(train)
        (data / "qrels" / "test.tsv").write_text(test)
        code = run_train(tmp, "--data", str(data), "--set", "data.dev_fraction=0.5")
        assert_clean_outcome(code, capsys, tmp)


setting_keys = st.sampled_from(
    [
        "name", "runs_dir", "model.query_prefix", "model.max_seq_length", "data.dev_fraction", "data.test_fraction",
        "data.split_seed", "data.dev_max_corpus", "data.eval_split", "loss.name", "loss.scale", "loss.symmetric",
        "train.epochs", "train.batch_size", "train.learning_rate", "train.seed", "train.warmup_ratio",
        "train.eval_strategy", "train.eval_steps", "train.primary_metric", "eval.metrics", "train", "nope.x", "name.x",
    ]
)  # fmt: skip
setting_values = st.one_of(
    text, st.sampled_from(["0", "-1", "1e999", "nan", "inf", "none", "4294967296", "2", "0.5", "ndcg@10", "~", ""])
)
valid_numbers = st.sampled_from(["1", "2", "0.5", "3e-5", "1e-3", "8"])


@CASES
@given(
    overrides=st.lists(st.tuples(setting_keys, setting_values), max_size=4),
    config_text=st.one_of(
        st.none(),
        st.text(max_size=40),
        st.dictionaries(setting_keys, setting_values, max_size=3).map(
            lambda d: "\n".join(f"{k.replace('.', ': {')}: {v}" + ("}" if "." in k else "") for k, v in d.items())
        ),
        json_value.map(json.dumps),
    ),
    as_json=st.booleans(),
)
def test_generated_settings_and_config_files(overrides, config_text, as_json, tiny_beir, capsys):
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        args = ["--data", str(tiny_beir)]
        if config_text is not None:
            config = tmp / ("config.json" if as_json else "config.yaml")
            config.write_text(config_text, encoding="utf-8", errors="surrogatepass")
            args += ["--config", str(config)]
        for key, value in overrides:
            if key == "runs_dir":
                continue  # the runs folder stays inside tmp so that the no-folder check sees it
            args += ["--set", f"{key}={value}"]
        code = run_train(tmp, *args)
        assert_clean_outcome(code, capsys, tmp)


@CASES
@given(
    name=text,
    epochs=valid_numbers | setting_values,
    batch=valid_numbers | setting_values,
    lr=valid_numbers | setting_values,
)
def test_generated_flags(name, epochs, batch, lr, tiny_beir, capsys):
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        flags = [f"--name={name}", f"--epochs={epochs}", f"--batch-size={batch}", f"--lr={lr}"]
        code = run_train(tmp, "--data", str(tiny_beir), *flags)
        assert_clean_outcome(code, capsys, tmp)


def test_generated_inputs_also_reach_the_model_stage():
    # The generators must produce valid inputs too, or the properties above would only test rejection.
    print(f"\n{cases_run['count']} generated cases, {reached_model['count']} passed validation")
    assert cases_run["count"] >= 2000 and reached_model["count"] >= 100, (cases_run, reached_model)
