"""Every training config under examples/ runs end to end on a tiny slice, so that the recipes never rot.

Each config is run the way docs/recipes.md runs it: its data made by the documented commands (``embedtune mine``,
``prepare pairs|squad|docs``) on tiny inputs, then ``embedtune train --config examples/<recipe>.yaml`` from the
project root. Overrides only swap what the tiny slice needs: the tiny model (32-d, so ``head.dim`` and
``loss.matryoshka_dims`` shrink with it), the data paths, a few steps and small batches. Every other setting is the
config's own, and each test checks that its recipe's defining feature was in effect.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sentence_transformers import SentenceTransformer

from embedtune.cli import main
from embedtune.data.feature_weights import load_feature_weights
from embedtune.data.training_file import load_triplets
from embedtune.runs import load_run
from tests.training.test_pipeline import scalar_tags

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def is_training_config(path: Path) -> bool:
    """Tell a training config from a feature-weights file (whose top-level keys include ``features``)."""
    return "features" not in (yaml.safe_load(path.read_text(encoding="utf-8")) or {})


TRAINING_CONFIGS = sorted(path.name for path in EXAMPLES.glob("*.yaml") if is_training_config(path))


def run_cli(*argv: object) -> None:
    assert main([str(arg) for arg in argv]) == 0, argv


def train(config: str, runs: Path, *settings: str) -> tuple[Path, dict]:
    """Run ``embedtune train --config examples/CONFIG --set ...``; return the finished run folder and its metrics."""
    overrides = [part for setting in (f"runs_dir={runs}", *settings) for part in ("--set", setting)]
    run_cli("-q", "train", "--config", f"examples/{config}", *overrides)
    (folder,) = runs.iterdir()
    assert load_run(folder).status == "finished"
    return folder, json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def mine(beir: Path, model: Path, out: Path, *options: str) -> Path:
    run_cli("mine", beir, out, "--model", model, "--range-min", 0, "--range-max", 6, "--num-negatives", 3, *options)
    return out


@pytest.fixture()
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the project root, as the recipes do (their configs name examples/... relative to it)."""
    monkeypatch.chdir(ROOT)
    return ROOT


def scifact(tiny_model_dir: Path, tiny_beir: Path, tmp_path: Path) -> None:
    folder, metrics = train(
        "scifact.yaml",
        tmp_path / "runs",
        f"model.name_or_path={tiny_model_dir}",
        f"data.path={tiny_beir}",
        "train.max_steps=2",
        "train.batch_size=4",
    )
    assert metrics["report"]["split"] == "test"


def feature_weights(tiny_model_dir: Path, tiny_beir: Path, tmp_path: Path) -> None:
    mined = mine(tiny_beir, tiny_model_dir, tmp_path / "mined.jsonl", "--retriever", "both", "--features-from-sources")
    weights = load_feature_weights(EXAMPLES / "negative-weights.yaml")
    examples = load_triplets(mined, weights)
    expected = {max(weights.features[name] for name in sources) for ex in examples for sources in ex.neg_sources}
    assert {w for ex in examples for w in ex.neg_weights} == expected  # the shipped config prices the sources

    folder, metrics = train(
        "frozen-head-feature-weights.yaml",
        tmp_path / "runs",
        f"model.name_or_path={tiny_model_dir}",
        f"data.path={tiny_beir}",
        f"data.train_file={mined}",
        "head.dim=16",
        "train.epochs=2",
        "train.batch_size=4",
    )
    config = load_run(folder).record.config
    assert config["train"]["mode"] == "head" and config["data"]["feature_weights"].endswith("negative-weights.yaml")
    assert "Head mode: " in (folder / "train.log").read_text(encoding="utf-8")  # trained from cached embeddings
    assert metrics["loss_history"]


def write_html_squad(path: Path) -> Path:
    """A KorQuAD-like file: Korean questions, HTML contexts, ten articles."""
    data = []
    for index in range(10):
        context = f"<p>정보 {index}번은 <b>항목 {index}</b>에 관한 것이다.</p><p>what color is the apple {index}</p>"
        qas = [{"id": f"q{index}", "question": f"정보 {index}번은 무엇인가?", "answers": [{"text": f"항목 {index}"}]}]
        data.append({"title": f"문서 {index}", "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"data": data}, ensure_ascii=False), encoding="utf-8")
    return path


def korquad_lora(tiny_model_dir: Path, tiny_beir: Path, tmp_path: Path) -> None:
    beir = tmp_path / "korquad"
    run_cli("prepare", "squad", write_html_squad(tmp_path / "squad.json"), beir)
    assert "<p>" not in (beir / "corpus.jsonl").read_text(encoding="utf-8")
    folder, metrics = train(
        "korquad-lora.yaml",
        tmp_path / "runs",
        f"model.name_or_path={tiny_model_dir}",
        f"data.path={beir}",
        "model.max_seq_length=32",
        "train.logging_steps=1",
        "train.max_steps=2",
        "train.eval_steps=1",
        "train.batch_size=4",
    )
    assert (folder / "adapter").is_dir() and metrics["trainable_parameters"]["trainable"] > 0
    assert any(tag.startswith("grad_norm/") and "lora" in tag for tag in scalar_tags(folder))


def graded_pairs(tiny_model_dir: Path, tiny_beir: Path, tmp_path: Path) -> None:
    mined = mine(tiny_beir, tiny_model_dir, tmp_path / "mined.jsonl")
    pairs = tmp_path / "pairs.jsonl"
    run_cli("prepare", "pairs", mined, pairs)
    folder, metrics = train(
        "graded-pairs-curriculum-matryoshka.yaml",
        tmp_path / "runs",
        f"model.name_or_path={tiny_model_dir}",
        f"data.train_file={pairs}",
        "data.test_fraction=0.2",
        "data.dev_fraction=0.2",
        "loss.matryoshka_dims=32,16",
        f"eval.extra_datasets={tiny_beir}",
        "train.batch_size=2",
    )
    assert [phase["name"] for phase in metrics["curriculum"]["phases"]] == ["easy", "medium", "hard"]
    assert "ndcg@10@16d" in metrics["report"]["fine_tuned"] and "ndcg@10@16d" in metrics["report"]["base"]
    assert {"spearman", "roc_auc", "f1", "separability", "passed"} <= set(metrics["pair_diagnostics"]["fine_tuned"])
    assert metrics["extra_reports"][0]["dataset"] == str(tiny_beir)


def write_documents(folder: Path) -> Path:
    folder.mkdir()
    for index, (fruit, vehicle) in enumerate(
        zip(["apple", "banana", "cherry", "grape", "lemon"] * 2, ["car", "bus"] * 5, strict=True)
    ):
        text = f"the {fruit} is sweet fruit on a tree. the {vehicle} is fast on the road. what color is the {fruit}."
        (folder / f"doc{index}.txt").write_text(text, encoding="utf-8")
    return folder


def docs_ict(tiny_model_dir: Path, tiny_beir: Path, tmp_path: Path) -> None:
    ict = tmp_path / "ict"
    run_cli("prepare", "docs", write_documents(tmp_path / "docs"), ict, "--method", "ict", "--tokenizer", "whitespace")
    folder, metrics = train(
        "docs-ict-head-isotropy.yaml",
        tmp_path / "runs",
        f"model.name_or_path={tiny_model_dir}",
        f"data.path={ict}",
        "head.dim=16",
        f"eval.extra_datasets={tiny_beir}",
        "train.logging_steps=1",
        "train.max_steps=2",
        "train.eval_steps=1",
        "train.batch_size=4",
    )
    config = load_run(folder).record.config
    assert config["head"]["add"] and config["train"]["mode"] == "full"
    assert (config["train"]["learning_rate"], config["train"]["head_learning_rate"]) == (1e-5, 5e-4)
    encoder = sum(parameter.numel() for parameter in SentenceTransformer(str(tiny_model_dir)).parameters())
    head = 32 * 16 + 16
    assert metrics["trainable_parameters"]["trainable"] == metrics["trainable_parameters"]["total"] == encoder + head
    assert any("uniformity" in key for entry in metrics["loss_history"] for key in entry)
    assert metrics["extra_reports"][0]["dataset"] == str(tiny_beir)


SLICES: dict[str, Callable[[Path, Path, Path], None]] = {
    "scifact.yaml": scifact,
    "frozen-head-feature-weights.yaml": feature_weights,
    "korquad-lora.yaml": korquad_lora,
    "graded-pairs-curriculum-matryoshka.yaml": graded_pairs,
    "docs-ict-head-isotropy.yaml": docs_ict,
}


def test_every_training_config_has_a_slice():
    assert sorted(SLICES) == TRAINING_CONFIGS


@pytest.mark.parametrize("config", TRAINING_CONFIGS)
def test_example_config_runs_on_a_tiny_slice(config, at_root, tiny_model_dir, tiny_beir, tmp_path):
    SLICES[config](tiny_model_dir, tiny_beir, tmp_path)
