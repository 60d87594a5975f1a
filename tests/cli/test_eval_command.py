from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from embedtune.cli import main
from tests.conftest import write_noise_beir, write_tiny_beir
from tests.runs.factories import finished_run, make_config

METRIC_KEYS = ["ndcg@10", "map@100", "recall@10", "recall@100", "mrr@10"]


def perturbed_model(source: Path, folder: Path, seed: int) -> Path:
    """Save a copy of the tiny model with noise added to every weight (a different, still valid model)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source), device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    model.save(str(folder))
    return folder


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("perturbed")
    return perturbed_model(tiny_model_dir, root / "one", 1), perturbed_model(tiny_model_dir, root / "two", 2)


@pytest.fixture()
def datasets(tmp_path) -> tuple[Path, Path]:
    return write_tiny_beir(tmp_path / "fruit"), write_noise_beir(tmp_path / "noise")


@pytest.fixture()
def load_calls(monkeypatch) -> list[str]:
    """Record every model load made by the command (still loading the model)."""
    from embedtune.models import loading

    calls: list[str] = []
    real = loading.load_model

    def spy(name_or_path, *args, **kwargs):
        calls.append(name_or_path)
        return real(name_or_path, *args, **kwargs)

    monkeypatch.setattr(loading, "load_model", spy)
    return calls


def make_run(runs_dir: Path, name: str, model: Path, base: Path, **settings) -> Path:
    model_settings = {f"model__{key}": value for key, value in settings.items()}
    folder = finished_run(runs_dir, name, config=make_config(model__name_or_path=str(base), **model_settings))
    shutil.copytree(model, folder / "model")
    return folder


def test_runs_on_two_datasets_with_default_baseline_and_out(
    tiny_model_dir, models, datasets, load_calls, tmp_path, capsys
):
    runs_dir = tmp_path / "runs"
    make_run(runs_dir, "alpha", models[0], tiny_model_dir)
    make_run(runs_dir, "beta", models[1], tiny_model_dir)
    fruit, noise = datasets
    out = tmp_path / "results" / "first"
    argv = ["eval", "--model", "alpha", "--model", "beta", "--runs-dir", str(runs_dir)]
    argv += ["--data", f"{fruit}:train", "--data", str(noise), "--out", str(out), "--resamples", "500"]
    assert main(argv) == 0
    printed = capsys.readouterr().out

    # Each model (baseline included) loaded once, whatever the number of datasets; the baseline first.
    assert len(load_calls) == 3 and load_calls[0] == str(tiny_model_dir)
    base = str(tiny_model_dir)
    assert "fruit:train: 10 queries, 14 documents" in printed and "noise:test: 6 queries" in printed
    for model in ("alpha", "beta"):
        assert printed.count(f"{model} vs {base}: nDCG@10 ") == 2

    summary = json.loads((out / "summary.json").read_text())
    assert summary["baseline"]["label"] == base and summary["baseline"]["run"] is None
    assert [model["label"] for model in summary["models"]] == ["alpha", "beta"]
    assert summary["models"][0]["run"].endswith("-alpha") and summary["models"][0]["base_model"] == base
    assert [(d["name"], d["split"], d["queries"]) for d in summary["datasets"]] == [
        ("fruit:train", "train", 10),
        ("noise:test", "test", 6),
    ]
    lines = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * (10 + 6)
    for dataset in summary["datasets"]:
        assert list(dataset["baseline"]["means"]) == METRIC_KEYS
        assert f"{dataset['baseline']['means']['ndcg@10']:.4f}" in printed
        for model in dataset["models"]:
            rows = [r for r in lines if r["dataset"] == dataset["name"] and r["model"] == model["label"]]
            assert {r["role"] for r in rows} == {"model"} and len(rows) == dataset["queries"]
            for metric in METRIC_KEYS:
                assert model["means"][metric] == pytest.approx(sum(r[metric] for r in rows) / len(rows))
                delta = model["means"][metric] - dataset["baseline"]["means"][metric]
                assert model["delta"][metric] == pytest.approx(delta)
            comparison = model["comparison"]
            assert comparison["queries"] == dataset["queries"] and comparison["resamples"] == 500
            assert comparison["mean_diff"] == pytest.approx(model["delta"]["ndcg@10"])
            assert comparison["labels"] == [base, model["label"]]
            assert comparison["verdict"] in printed


def test_explicit_baseline_and_no_baseline(tiny_model_dir, models, datasets, tmp_path, capsys):
    fruit, noise = datasets
    data = ["--data", str(fruit), "--data", str(noise)]
    one, two = (str(model) for model in models)
    assert main(["eval", "--model", one, "--model", two, *data, "--baseline", str(tiny_model_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.count(f"{one} vs {tiny_model_dir}: nDCG@10") == 2 and "delta" in printed

    # Plain model folders share no recorded base: no baseline unless named; --no-baseline turns it off for runs too.
    assert main(["eval", "--model", one, *data]) == 0
    printed = capsys.readouterr().out
    assert " vs " not in printed and "delta" not in printed and "nDCG@10" in printed
    runs_dir = tmp_path / "runs"
    make_run(runs_dir, "alpha", models[0], tiny_model_dir)
    assert main(["eval", "--model", "alpha", "--runs-dir", str(runs_dir), *data, "--no-baseline"]) == 0
    assert " vs " not in capsys.readouterr().out


def test_the_default_baseline_is_loaded_as_the_runs_loaded_it(tiny_model_dir, models, datasets, tmp_path, capsys):
    runs_dir, fruit = tmp_path / "runs", str(datasets[0])
    make_run(runs_dir, "alpha", models[0], tiny_model_dir, max_seq_length=4, query_prefix="query: ")
    means = {}
    for name, options in {
        "default": ["--runs-dir", str(runs_dir)],
        "flags": ["--baseline", str(tiny_model_dir), "--max-seq-length", "4", "--query-prefix", "query: "],
        "own settings": ["--baseline", str(tiny_model_dir)],
    }.items():
        out = tmp_path / name
        assert (
            main(
                [
                    "eval",
                    "--model",
                    str(runs_dir / next(runs_dir.iterdir()).name),
                    "--data",
                    fruit,
                    *options,
                    "--out",
                    str(out),
                    "--resamples",
                    "100",
                ]
            )
            == 0
        )
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        means[name] = summary["datasets"][0]["baseline"]["means"]
        if name == "default":
            settings = {"max_seq_length": 4, "query_prefix": "query: ", "passage_prefix": ""}
            assert summary["baseline"]["settings"] == settings
    capsys.readouterr()
    assert means["default"] == means["flags"] != means["own settings"]


def test_runs_that_loaded_their_base_differently_need_a_named_baseline(
    tiny_model_dir, models, datasets, tmp_path, load_calls, capsys
):
    runs_dir = tmp_path / "runs"
    make_run(runs_dir, "alpha", models[0], tiny_model_dir, max_seq_length=16)
    make_run(runs_dir, "beta", models[1], tiny_model_dir, max_seq_length=32)
    argv = ["eval", "--model", "alpha", "--model", "beta", "--runs-dir", str(runs_dir), "--data", str(datasets[0])]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "alpha: max_seq_length 16; beta: max_seq_length 32" in error
    assert "--baseline" in error and load_calls == []


def test_refuses_an_existing_out_folder_before_loading_anything(models, datasets, load_calls, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["eval", "--model", str(models[0]), "--data", str(datasets[0]), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert load_calls == []
    assert [path.name for path in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("damage", ["missing split", "bad corpus", "no folder"])
def test_a_bad_dataset_fails_before_any_model_loads(damage, models, datasets, load_calls, tmp_path, capsys):
    fruit, noise = datasets
    bad = str(noise)
    if damage == "missing split":
        bad = f"{noise}:dev"
    elif damage == "bad corpus":
        with (noise / "corpus.jsonl").open("a") as handle:
            handle.write('{"_id": "broken"}\n')
    else:
        bad = str(tmp_path / "nowhere")
    argv = ["eval", "--model", str(models[0]), "--model", str(models[1]), "--data", str(fruit), "--data", bad]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "Traceback" not in error
    assert {"missing split": "dev.tsv", "bad corpus": "corpus.jsonl", "no folder": "nowhere"}[damage] in error
    assert load_calls == []


def test_a_model_given_twice_is_refused(models, datasets, load_calls, capsys):
    argv = ["eval", "--model", str(models[0]), "--model", str(models[0]), "--data", str(datasets[0])]
    assert main(argv) == 2
    assert "given twice" in capsys.readouterr().err
    assert load_calls == []


def test_train_data_splits_each_comparison_into_seen_and_unseen_queries(tiny_model_dir, models, tmp_path, capsys):
    from tests.evaluation.test_seen_unseen import write_shared_document_beir

    beir = write_shared_document_beir(tmp_path / "shared")
    out = tmp_path / "out"
    args = ["eval", "--model", str(models[0]), "--data", str(beir), "--baseline", str(tiny_model_dir)]
    assert main([*args, "--train-data", str(beir), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    (model,) = summary["datasets"][0]["models"]
    split = model["seen_unseen"]
    assert split["seen_queries"] == [f"t{i}" for i in range(6)]  # t0-t5's documents are training positives
    assert split["seen"]["queries"] == 6 and split["unseen"]["queries"] == 4
    rows = [json.loads(line) for line in (out / "per_query.jsonl").read_text(encoding="utf-8").splitlines()]
    scores = {(row["role"], row["query_id"]): row["ndcg@10"] for row in rows}
    seen_deltas = [scores["model", f"t{i}"] - scores["baseline", f"t{i}"] for i in range(6)]
    assert split["seen"]["mean_diff"] == pytest.approx(sum(seen_deltas) / 6, abs=1e-9)
    assert f"{model['label']} seen/unseen: {split['verdict']}" in printed

    # A training file gives the same split through the positives' texts.
    train_file = tmp_path / "train.jsonl"
    corpus = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (beir / "corpus.jsonl").open()}
    train_file.write_text("".join(json.dumps({"query": f"q{i}", "pos": [corpus[f"d{i}"]]}) + "\n" for i in range(6)))
    assert main([*args, "--train-data", str(train_file)]) == 0
    assert f"seen (6 queries) Δ {split['seen']['mean_diff']:+.4f}" in capsys.readouterr().out


def test_train_data_needs_a_baseline_and_readable_data(models, datasets, load_calls, tmp_path, capsys):
    base = ["eval", "--model", str(models[0]), "--data", str(datasets[0])]
    assert main([*base, "--no-baseline", "--train-data", str(datasets[0])]) == 2
    assert "--train-data splits the comparison with a baseline" in capsys.readouterr().err
    missing = tmp_path / "nope.jsonl"
    assert main([*base, "--train-data", str(missing)]) == 2
    error = capsys.readouterr().err.strip()
    assert str(missing) in error and len(error.splitlines()) == 1
    assert load_calls == []  # both refused before any model loads
