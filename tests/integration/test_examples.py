"""Every training config under examples/ runs end to end on a tiny slice, so that the recipes never rot.

Each config is run the way its header comment says: the commands listed there (``embedtune mine``, ``prepare
pairs|squad|docs``, ``mkdir``/``cp``, ``embedtune train --config examples/<recipe>.yaml``, ``embedtune eval``) are
read from the file and run in order from the project root, with the real inputs swapped for tiny ones: the tiny model
for ``all-MiniLM-L6-v2``, the tiny BEIR folder for ``../shared/datasets/scifact``, a tiny KorQuAD-like file, and a
temporary ``recipe-data/``. Only the options a tiny input needs are added (:data:`TINY_OPTIONS`: a rank window and a
margin that suit 14 documents and a random model, an offline tokenizer). Training goes through ``embedtune train
--config`` with ``--set`` overrides limited to :data:`TINY_KNOBS` (paths, the tiny model's 32 dimensions and 64
positions, a few steps of small batches); the test checks that every other setting reached the run exactly as the
config file sets it, that the data the config reads is what the commands wrote, and that each recipe's defining
feature was in effect.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer

from embedtune.cli import main
from embedtune.config import build_config, config_from_dict
from embedtune.data.feature_weights import load_feature_weights
from embedtune.data.prepare import prepare_data
from embedtune.errors import DataError
from embedtune.runs import load_run
from tests.conftest import FRUITS
from tests.training.test_pipeline import scalar_tags

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REAL_MODEL = "all-MiniLM-L6-v2"
DIM_RATIO = 384 // 32  # all-MiniLM-L6-v2 has 384 dimensions, the tiny model 32: sizes shrink by this factor

TINY_KNOBS = {
    "runs_dir",
    "model.name_or_path",
    "model.max_seq_length",
    "data.path",
    "data.train_file",
    "eval.extra_datasets",
    "loss.matryoshka_dims",
    "head.dim",
    "train.max_steps",
    "train.batch_size",
    "train.eval_steps",
    "train.logging_steps",
    "curriculum.epochs_per_phase",
}
"""The only settings a slice may override; every other one must reach the run as the config file sets it."""

TINY_OPTIONS = {
    # The default rank window (10-100) does not fit 14 documents; a random 32-d model scores every document within
    # 5 % of the positive, so the recipes' --relative-margin 0.05 would drop every candidate (a later option wins).
    "mine": ["--model", REAL_MODEL, "--range-min", "0", "--range-max", "8", "--relative-margin", "0"],
    "prepare docs": ["--tokenizer", REAL_MODEL],
    "eval": ["--resamples", "200"],
}
"""Options added to a documented command (by its first words) so that it runs on tiny inputs, offline.

``--model``/``--tokenizer`` name the default, all-MiniLM-L6-v2, explicitly, so that the tiny model stands in for it.
"""


def is_feature_weights(path: Path) -> bool:
    """Tell a feature-weights file (``data.feature_weights``) from a training config."""
    try:
        load_feature_weights(path)
    except DataError:
        return False
    return True


TRAINING_CONFIGS = sorted(path.name for path in EXAMPLES.glob("*.yaml") if not is_feature_weights(path))


def documented_commands(config: str) -> list[list[str]]:
    """The shell commands of the config's header comment, continuation lines joined and ``&&`` chains split."""
    header = []
    for line in (EXAMPLES / config).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:])
    commands: list[list[str]] = []
    for line in "\n".join(header).replace("\\\n", " ").splitlines():
        if line.split()[:1] not in (["embedtune"], ["mkdir"], ["cp"]):
            continue  # prose
        commands.append([])
        for word in shlex.split(line.partition(" (")[0]):  # a trailing "(remark)" is prose too
            if word == "&&":
                commands.append([])
            else:
                commands[-1].append(word)
    return commands


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclasses.dataclass
class Ran:
    """What a slice's training command produced.

    Attributes:
        folder: The run folder.
        metrics: Its metrics.json.
        settings: The settings recorded in its run.json.
        tiny: Swaps a real input (path or model name) for its tiny stand-in.
        tmp_path: The slice's folder (``eval/`` holds the output of a documented ``embedtune eval``).
        optimizer_groups: For each optimizer the sentence-transformers trainer created: learning rate -> parameters.
    """

    folder: Path
    metrics: dict[str, Any]
    settings: dict[str, Any]
    tiny: Callable[[str], str]
    tmp_path: Path
    optimizer_groups: list[dict[float, int]]


class Slice:
    """Runs one example config's documented commands on tiny inputs."""

    def __init__(
        self, config: str, tmp_path: Path, inputs: dict[str, Path], optimizer_groups: list[dict[float, int]]
    ) -> None:
        self.config, self.tmp_path, self.optimizer_groups = config, tmp_path, optimizer_groups
        self.inputs = {**inputs, "recipe-data": tmp_path / "recipe-data"}
        self.runs = tmp_path / "runs"
        self.ran: Ran | None = None

    def tiny(self, value: str) -> str:
        """Swap a real input (a path prefix, or the model name) for its tiny stand-in."""
        for real, tiny in self.inputs.items():
            if value == real or value.startswith((real + "/", real + ":")):
                return str(tiny) + value[len(real) :]
        assert "../shared" not in value and "recipe-data" not in value, f"no tiny stand-in for {value}"
        return value

    def tiny_settings(self) -> dict[str, str]:
        """The ``--set`` overrides of the tiny slice, derived from the config file's own settings."""
        own = flatten(dataclasses.asdict(build_config(EXAMPLES / self.config)))
        overrides = {"runs_dir": str(self.runs)}
        for key, value in own.items():  # paths and the model name
            values = value if isinstance(value, list) else [value]
            if any(isinstance(item, str) and self.tiny(item) != item for item in values):
                overrides[key] = ",".join(self.tiny(item) for item in values)
        if own["model.max_seq_length"] is not None:
            overrides["model.max_seq_length"] = "32"  # the tiny model has 64 positions
        if own["loss.matryoshka"]:
            overrides["loss.matryoshka_dims"] = ",".join(str(dim // DIM_RATIO) for dim in own["loss.matryoshka_dims"])
        if own["head.add"] or own["train.mode"] == "head":
            overrides["head.dim"] = str(own["head.dim"] // DIM_RATIO)
        overrides["train.batch_size"] = "4"
        if own["curriculum.enabled"]:
            overrides["curriculum.epochs_per_phase"] = "1"  # one pass over each phase instead of train.max_steps
        else:
            overrides["train.max_steps"] = "2"
        if own["train.eval_strategy"] == "steps":
            overrides["train.eval_steps"] = "1"
        overrides["train.logging_steps"] = "1"
        assert set(overrides) <= TINY_KNOBS, set(overrides) - TINY_KNOBS
        return overrides

    def run(self) -> Ran:
        """Run every documented command in order; return what the training command made."""
        commands = documented_commands(self.config)
        assert [command[:2] for command in commands].count(["embedtune", "train"]) == 1, commands
        for command in commands:
            args = [self.tiny(word) for word in command]
            if args[0] == "mkdir":
                assert args[1] == "-p"
                for folder in args[2:]:
                    Path(folder).mkdir(parents=True, exist_ok=True)
            elif args[0] == "cp":
                shutil.copy(args[1], args[2])
            elif args[1] == "train":
                assert args[2:] == ["--config", f"examples/{self.config}"], "run as documented"
                self.train(commands)
            else:
                options = TINY_OPTIONS.get(args[1], TINY_OPTIONS.get(" ".join(args[1:3]), []))
                if args[1] == "eval":
                    options = [*options, "--runs-dir", str(self.runs), "--out", str(self.tmp_path / "eval")]
                run_cli(*args[1:], *[self.tiny(option) for option in options])
        assert self.ran is not None
        return self.ran

    def train(self, commands: list[list[str]]) -> None:
        overrides = self.tiny_settings()
        run_cli(
            "-q", "train", "--config", f"examples/{self.config}", *[f"--set={k}={v}" for k, v in overrides.items()]
        )
        (folder,) = self.runs.iterdir()
        run = load_run(folder)
        assert run.status == "finished", run.error
        settings = run.record.config
        # Every setting not swapped for the tiny slice is the config file's own.
        expected = flatten(dataclasses.asdict(build_config(EXAMPLES / self.config)))
        recorded = flatten(settings)
        kept = {key: value for key, value in expected.items() if key not in overrides}
        assert {key: recorded[key] for key in kept} == kept
        for key in overrides:  # the data the config reads is what the documented commands wrote
            if key.startswith("data.") and recorded[key] is not None:
                assert Path(recorded[key]).exists(), f"{key}={recorded[key]} was not written by {commands}"
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        self.ran = Ran(folder, metrics, settings, self.tiny, self.tmp_path, self.optimizer_groups)


def run_cli(*argv: object) -> None:
    assert main([str(arg) for arg in argv]) == 0, argv


@pytest.fixture()
def optimizer_groups(monkeypatch: pytest.MonkeyPatch) -> list[dict[float, int]]:
    """Record, for each optimizer the trainer creates, its parameters per learning rate (TensorBoard logs one rate)."""
    created: list[dict[float, int]] = []
    original = SentenceTransformerTrainer.create_optimizer

    def create_optimizer(self: SentenceTransformerTrainer, *args: Any, **kwargs: Any) -> Any:
        optimizer = original(self, *args, **kwargs)
        groups: dict[float, int] = {}
        for group in optimizer.param_groups:
            groups[group["lr"]] = groups.get(group["lr"], 0) + sum(p.numel() for p in group["params"])
        created.append({rate: count for rate, count in groups.items() if count})
        return optimizer

    monkeypatch.setattr(SentenceTransformerTrainer, "create_optimizer", create_optimizer)
    return created


@pytest.fixture()
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the project root, as the recipes do (their configs name examples/... relative to it)."""
    monkeypatch.chdir(ROOT)
    return ROOT


def write_html_squad(path: Path) -> Path:
    """A KorQuAD-like file: Korean questions, HTML contexts (merged paragraphs too), ten articles."""
    data = []
    for index in range(10):
        context = f"<p>정보 {index}번은 <b>항목 {index}</b>에 관한 것이다.</p><p>what color is the apple {index}</p>"
        qas = [
            {"id": f"q{index}", "question": f"정보 {index}번은 무엇인가?", "answers": [{"text": f"항목 {index}"}]},
            {"id": f"r{index}", "question": f"항목 {index}은 어디에?", "answers": [{"text": "apple"}]},
        ]
        data.append({"title": f"문서 {index}", "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"data": data}, ensure_ascii=False), encoding="utf-8")
    return path


def add_lexical_traps(beir: Path) -> None:
    """Make the vehicle documents mention fruits, so that BM25 finds negatives the dense model does not."""
    corpus = beir / "corpus.jsonl"
    docs = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    for index, doc in enumerate(docs):
        if doc["_id"].startswith("v"):
            doc["text"] += f" past the {FRUITS[index % 10]} and {FRUITS[(index + 3) % 10]} tree"
    corpus.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")


def multi_sentence_corpus(beir: Path) -> None:
    """Give every document of the tiny BEIR folder three sentences, so that ICT has sentences to take out."""
    corpus = beir / "corpus.jsonl"
    docs = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    for index, doc in enumerate(docs):
        other = docs[(index + 1) % len(docs)]["title"]
        doc["text"] = f"{doc['text']}. the {other} is on the road. what color is the {doc['title']}."
    corpus.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")


# What each recipe is for: the checks below fail when its defining feature silently stops being used.


def encoder_parameters(ran: Ran) -> int:
    return sum(parameter.numel() for parameter in SentenceTransformer(ran.tiny(REAL_MODEL)).parameters())


def check_scifact(ran: Ran) -> None:
    assert ran.metrics["report"]["split"] == "test" and ran.metrics["loss_history"]
    rate = ran.settings["train"]["learning_rate"]
    assert ran.optimizer_groups == [{rate: encoder_parameters(ran)}]  # a full fine-tune at the configured rate


def check_feature_weights(ran: Ran) -> None:
    settings = ran.settings
    assert settings["train"]["mode"] == "head"
    assert settings["data"]["feature_weights"] == "examples/negative-weights.yaml"  # the shipped file, unchanged
    # The mined file tags each negative with the retrievers that found it ...
    mined = Path(settings["data"]["train_file"])
    records = [json.loads(line) for line in mined.read_text(encoding="utf-8").splitlines()]
    assert all("neg_weights" not in record for record in records)
    assert all(record["neg_features"] == record.get("neg_sources", []) for record in records)
    # ... and the run's data, loaded as training loads it, prices them with the shipped weights.
    weights = load_feature_weights(ROOT / settings["data"]["feature_weights"])
    assert set(weights.features) == {"dense", "bm25"}
    examples = prepare_data(config_from_dict(settings).data).train_examples
    priced = {(tuple(s), w) for ex in examples for s, w in zip(ex.neg_sources, ex.neg_weights, strict=True)}
    assert priced == {(sources, max(weights.features[name] for name in sources)) for sources, _ in priced}
    assert {("dense",), ("bm25",)} <= {sources for sources, _ in priced}  # the lexical traps were found by BM25
    assert {w for _, w in priced} == {weights.features["dense"], weights.features["bm25"]}
    log = (ran.folder / "train.log").read_text(encoding="utf-8")
    assert "Head mode: " in log  # trained on embeddings cached from the frozen encoder
    assert ran.metrics["loss_history"] and ran.optimizer_groups == []  # the head trainer, not the encoder's


def lora_parameters(ran: Ran) -> int:
    """Parameters of a rank-r adapter on the tiny model's query, key and value projections (32 x 32, two layers)."""
    return ran.settings["lora"]["rank"] * (32 + 32) * 3 * 2


def check_lora(ran: Ran) -> None:
    assert ran.settings["train"]["mode"] == "lora"
    assert ran.metrics["trainable_parameters"]["trainable"] == lora_parameters(ran)
    assert ran.optimizer_groups == [{ran.settings["train"]["learning_rate"]: lora_parameters(ran)}]
    fine_tuned = ran.metrics["selection"]["chosen"] == "fine_tuned"
    assert (ran.folder / "adapter").is_dir() == fine_tuned  # written when the adapter is selected


def check_korquad_lora(ran: Ran) -> None:
    corpus = (Path(ran.settings["data"]["path"]) / "corpus.jsonl").read_text(encoding="utf-8")
    assert "<p>" not in corpus and "<b>" not in corpus and "항목 3" in corpus  # HTML cleaned, Hangul kept
    check_lora(ran)
    tags = scalar_tags(ran.folder)
    for matrix in ("lora_A", "lora_B"):
        assert any(tag.startswith("grad_norm/") and matrix in tag for tag in tags), sorted(tags)
    assert [entry["step"] for entry in ran.metrics["dev_history"]] == [0, 1, 2]  # dev every eval_steps


def check_graded_pairs(ran: Ran) -> None:
    pairs = [json.loads(line) for line in Path(ran.settings["data"]["train_file"]).read_text().splitlines()]
    assert {pair["label"] for pair in pairs} == {0.0, 1.0}
    schedule = ran.metrics["curriculum"]
    assert schedule["source"] == "phase" and schedule["epochs_per_phase"] == 1.0
    assert [phase["name"] for phase in schedule["phases"]] == ran.settings["curriculum"]["phases"]
    assert all(phase["examples"] > 0 for phase in schedule["phases"])
    assert ran.settings["loss"]["matryoshka"] and ran.settings["loss"]["name"] == "mnrl"
    full, *truncated = ran.settings["loss"]["matryoshka_dims"]
    assert full == 32 and truncated  # the model's own width, then the truncations reported beside it
    for model in ("base", "fine_tuned"):
        figures = ran.metrics["report"][model]
        assert {f"ndcg@10@{dim}d" for dim in truncated} <= set(figures), sorted(figures)
    for model in ("base", "fine_tuned"):
        diagnostics = ran.metrics["pair_diagnostics"][model]
        assert {"spearman", "roc_auc", "f1", "separability", "passed"} <= set(diagnostics)
    check_lora(ran)
    (extra,) = ran.metrics["extra_reports"]
    assert (extra["dataset"], extra["split"]) == (ran.tiny("../shared/datasets/scifact:test"), "test")


def check_docs_ict(ran: Ran) -> None:
    train = ran.settings["train"]
    assert ran.settings["head"]["add"] and train["mode"] == "full"
    encoder = encoder_parameters(ran)
    dim = ran.settings["head"]["dim"]
    assert ran.metrics["trainable_parameters"]["trainable"] == encoder + 32 * dim + dim  # encoder and head train
    assert train["learning_rate"] != train["head_learning_rate"]
    assert ran.optimizer_groups == [{train["learning_rate"]: encoder, train["head_learning_rate"]: 32 * dim + dim}]
    assert ran.settings["loss"]["isotropy_weight"] == 0.1
    assert any("uniformity" in key for entry in ran.metrics["loss_history"] for key in entry)
    (extra,) = ran.metrics["extra_reports"]
    assert (extra["dataset"], extra["split"]) == (ran.tiny("../shared/datasets/scifact:test"), "test")
    # The documented `embedtune eval` found the run by its name and compared it with the base model on test.
    summary = json.loads((ran.tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))
    assert [model["run"] for model in summary["models"]] == [str(ran.folder)]
    assert summary["baseline"]["path"] == ran.tiny(REAL_MODEL)
    assert [(data["folder"], data["split"]) for data in summary["datasets"]] == [
        (ran.tiny("../shared/datasets/scifact"), "test")
    ]


SLICES: dict[str, Callable[[Ran], None]] = {
    "scifact.yaml": check_scifact,
    "frozen-head-feature-weights.yaml": check_feature_weights,
    "korquad-lora.yaml": check_korquad_lora,
    "graded-pairs-curriculum-matryoshka.yaml": check_graded_pairs,
    "docs-ict-head-isotropy.yaml": check_docs_ict,
}


def test_every_training_config_has_a_slice():
    assert sorted(SLICES) == TRAINING_CONFIGS
    assert sorted(EXAMPLES.iterdir()) == sorted(EXAMPLES.glob("*.yaml"))  # no config hides under another suffix
    named = {build_config(EXAMPLES / config).data.feature_weights for config in TRAINING_CONFIGS} - {None}
    assert named and all(is_feature_weights(ROOT / name) for name in named)  # configs name the weights files here


@pytest.mark.parametrize("config", TRAINING_CONFIGS)
def test_example_config_runs_on_a_tiny_slice(config, at_root, optimizer_groups, tiny_model_dir, tiny_beir, tmp_path):
    inputs = {REAL_MODEL: tiny_model_dir, "../shared/datasets/scifact": tiny_beir}
    if config == "korquad-lora.yaml":
        inputs["../shared/datasets/korquad-v1.0/KorQuAD_v1.0_dev.json"] = write_html_squad(tmp_path / "korquad.json")
    if config == "frozen-head-feature-weights.yaml":
        add_lexical_traps(tiny_beir)
    if config == "docs-ict-head-isotropy.yaml":
        multi_sentence_corpus(tiny_beir)
    # Not made by the documented commands of recipes 1 and 3: `embedtune mine` (unlike `prepare squad|docs`) needs the
    # folder of OUT to exist, so on a fresh checkout they need `mkdir -p recipe-data` first.
    (tmp_path / "recipe-data").mkdir()
    SLICES[config](Slice(config, tmp_path, inputs, optimizer_groups).run())
