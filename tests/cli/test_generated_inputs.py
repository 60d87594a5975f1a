"""Property-based tests: generated data files, configs and flags fed to ``embedtune train``.

Whatever the input, the command ends with exit code 0 or 2 and at most one ``error:`` line (never a traceback), and
no run folder exists afterwards: the model loader is replaced by a stub that checks the model as the real one does,
then refuses to load, so an input that passes validation stops exactly where the real run would load the model —
before any folder is created. The classes of bad input found last (a report on the train split, lone surrogates, an
unreadable qrels folder, a train split without relevant judgement, a missing runs folder, a model that cannot load)
are generated too, and each must be refused by validation with its own message.
"""

from __future__ import annotations

import errno
import json
import tempfile
from collections import Counter
from pathlib import Path

import huggingface_hub.constants
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedtune.cli import main
from embedtune.model_paths import ModelNotFoundError, check_model_available
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
bad_classes_run: Counter[str] = Counter()
MODEL = "all-MiniLM-L6-v2"  # the packaged copy: passes the model check without any network


@pytest.fixture(autouse=True)
def stub_model_loader(monkeypatch):
    def refuse(config, *args, **kwargs):
        check_model_available(config.model.name_or_path)  # as the real loader: a model that cannot load stops here
        reached_model["count"] += 1
        raise ModelNotFoundError(STUB_MESSAGE)

    monkeypatch.setattr(pipeline, "load_base_model", refuse)


words = st.sampled_from(
    ["apple", "pear", "car", "road", "", " ", "\t", "é", "한국어", "\x00", "\ufeff", "#", ":", "\ud800"]
)
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
    return main(["train", "--runs-dir", str(tmp / "runs"), "--model", MODEL, *args])


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
        (data / "qrels" / "train.tsv").write_bytes(train.encode("utf-8", "surrogatepass"))  # lone surrogate: not UTF-8
        (data / "qrels" / "test.tsv").write_bytes(test.encode("utf-8", "surrogatepass"))
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
    text,
    st.sampled_from(["0", "-1", "1e999", "nan", "inf", "none", "4294967296", "2", "0.5", "ndcg@10", "~", "", "train"]),
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


BAD_CLASSES = ("eval_split_train", "surrogate", "unreadable_qrels", "zero_train", "missing_runs_dir", "model")
SURROGATE_PLACES = [
    ("corpus.jsonl", "text"),
    ("corpus.jsonl", "title"),
    ("queries.jsonl", "text"),
    ("train.jsonl", "query"),
    ("train.jsonl", "pos"),
    ("train.jsonl", "neg"),
]
model_names = st.one_of(
    st.sampled_from(["null", "none", "NULL", "some-org/some-model", "e5-small", "a/b.c", "x" * 100]),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(/[a-z][a-z0-9.]{0,10})?", fullmatch=True),
)


@st.composite
def last_bad_input(draw) -> dict:
    """One input of a class the hardening missed last, with its variations."""
    kind = draw(st.sampled_from(BAD_CLASSES))
    case = {"kind": kind, "check": draw(st.booleans()), "ship": draw(st.sets(st.sampled_from(["dev", "test"])))}
    if kind == "eval_split_train":
        case["test_fraction"] = draw(st.sampled_from(["0", "0.1", "0.3"]))
    elif kind == "surrogate":
        case["place"] = draw(st.sampled_from(SURROGATE_PLACES))
        case["code_point"] = draw(st.integers(0xD800, 0xDFFF))
        case["line"] = draw(st.integers(0, 4))
        case["around"] = (draw(good_text), draw(st.sampled_from(["", " ", "x"])))
    elif kind == "zero_train":
        case["scores"] = draw(st.lists(st.integers(-3, 0), min_size=1, max_size=10))
    elif kind == "missing_runs_dir":
        case["name"] = draw(st.text(alphabet="abXY-_. 0é", min_size=1, max_size=12).filter(lambda n: n.strip(". ")))
        case["action"] = draw(st.sampled_from([["list"], ["show", "run"], ["compare", "a", "b"]]))
    elif kind == "model":
        case["name"] = draw(model_names)
    return case


def write_bad_case_folder(folder: Path, case: dict) -> Path:
    """A 14-query BEIR folder: train q0-q9 (scores as the case says), dev q10-q11 and test q12-q13 when shipped."""
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": f"title {i}", "text": f"document {i}"} for i in range(14)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(14)]
    files = {"corpus.jsonl": docs, "queries.jsonl": queries}
    if case["kind"] == "surrogate" and case["place"][0] != "train.jsonl":
        (name, field), (before, after) = case["place"], case["around"]
        files[name][case["line"]][field] = f"{before}{chr(case['code_point'])}{after}"
    for name, records in files.items():  # ASCII escapes: a lone surrogate is written as the escape that decodes to it
        (folder / name).write_text("".join(json.dumps(record) + "\n" for record in records))
    scores = case.get("scores") or [1] * 10
    rows = {"train": [(f"q{i}", f"d{i}", score) for i, score in enumerate(scores)]}
    rows |= {split: [(f"q{i}", f"d{i}", 1) for i in ids] for split, ids in (("dev", (10, 11)), ("test", (12, 13)))}
    for split in ["train", *sorted(case["ship"])]:
        lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{score}" for q, d, score in rows[split])]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


def bad_case_command(tmp: Path, case: dict) -> tuple[list[str], str]:
    """Return the command line of a generated bad input and a phrase its one error line must hold."""
    data = write_bad_case_folder(tmp / "_beir", case)
    train = ["train", "--runs-dir", str(tmp / "_runs"), "--data", str(data), *(["--check"] if case["check"] else [])]
    kind = case["kind"]
    if kind == "eval_split_train":
        return [*train, "--set", "data.eval_split=train", "--set", f"data.test_fraction={case['test_fraction']}"], (
            "data.eval_split: 'train' is the split the run trains on"
        )
    if kind == "surrogate":
        (name, field), code_point = case["place"], case["code_point"]
        extra = []
        if name == "train.jsonl":
            records = [{"query": f"train {i}", "pos": [f"pos {i}"], "neg": [f"neg {i}"]} for i in range(5)]
            value = f"{case['around'][0]}{chr(code_point)}{case['around'][1]}"
            records[case["line"]][field] = value if field == "query" else [value]
            (tmp / name).write_text("".join(json.dumps(record) + "\n" for record in records))
            extra, field = ["--train-file", str(tmp / name)], field if field == "query" else f"{field}[0]"
        location = f"{(data if name != 'train.jsonl' else tmp) / name}:{case['line'] + 1}: field '{field}'"
        return [*train, *extra], f"{location}: lone surrogate U+{code_point:04X}"
    if kind == "unreadable_qrels":
        return train, f"{data / 'qrels'}: cannot read: Permission denied"
    if kind == "zero_train":
        return train, "no judgement with score > 0"
    if kind == "missing_runs_dir":
        runs_dir = tmp / case["name"]
        return ["runs", "--runs-dir", str(runs_dir), *case["action"]], f"runs folder {runs_dir} not found"
    return [*train, "--model", case["name"]], f"model '{case['name']}'"


@settings(CASES, max_examples=240)
@given(case=last_bad_input())
def test_generated_last_bad_inputs_are_refused_by_validation(case, capsys):
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        tmp = Path(folder)
        patch.chdir(tmp)  # no model name can be a stray local folder
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # offline, with an empty cache
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp / "_hub"))
        if case["kind"] == "unreadable_qrels":
            real_stat = Path.stat

            def stat(self, *args, **kwargs):  # a qrels/ without search permission (the tests may run as root)
                if self.parent.name == "qrels":
                    raise PermissionError(errno.EACCES, "Permission denied", str(self))
                return real_stat(self, *args, **kwargs)

            patch.setattr(Path, "stat", stat)
        argv, phrase = bad_case_command(tmp, case)
        reached = reached_model["count"]
        code = main(argv)
        bad_classes_run[case["kind"]] += 1
        err = capsys.readouterr().err
        assert code == 2 and reached_model["count"] == reached, (case, err)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in err and STUB_MESSAGE not in err, (case, err)
        assert phrase in errors[0], (case, errors[0])
        assert not (tmp / "_runs").exists() or not any((tmp / "_runs").iterdir()), "a run folder was created"


def test_generated_inputs_also_reach_the_model_stage():
    # The generators must produce valid inputs too, or the properties above would only test rejection.
    print(f"\n{cases_run['count']} generated cases, {reached_model['count']} passed validation")
    assert cases_run["count"] >= 2000 and reached_model["count"] >= 100, (cases_run, reached_model)
    assert all(bad_classes_run[kind] >= 10 for kind in BAD_CLASSES), bad_classes_run
