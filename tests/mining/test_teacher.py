"""Teacher scores (embedtune mine --teacher): kinds told apart, bi-encoder cosines, cross-encoder logits, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder, SentenceTransformer

from embedtune.cli import main
from embedtune.config import build_config
from embedtune.data.training_file import load_triplets
from embedtune.data.types import TrainingExample
from embedtune.mining import teacher as teacher_module
from embedtune.mining.teacher import BI_ENCODER, CROSS_ENCODER, load_teacher, rescore, teacher_kind
from embedtune.training.pipeline import run_training
from tests.conftest import WORDS

PAIRS = [("what color is the apple", "the apple is red"), ("which car is fast", "the apple is red")]


@pytest.fixture(scope="module")
def cross_encoder_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """A randomly initialised 1-layer BERT cross-encoder: as a transformers folder and as saved by CrossEncoder."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=20,
        max_position_embeddings=64,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder / "hf")
    tokenizer.save_pretrained(folder / "hf")
    CrossEncoder(str(folder / "hf"), device="cpu").save(str(folder / "st"))
    return folder / "hf", folder / "st"


def test_kinds_are_told_apart_by_their_config_files(tiny_model_dir, cross_encoder_dirs, tmp_path):
    plain, saved = cross_encoder_dirs
    assert teacher_kind(plain) == teacher_kind(saved) == CROSS_ENCODER
    assert teacher_kind(tiny_model_dir) == BI_ENCODER
    assert teacher_kind(tmp_path) == BI_ENCODER  # nothing to read: sentence-transformers decides when it loads


def test_a_bi_encoder_teacher_scores_the_cosine(tiny_model_dir):
    teacher = load_teacher(str(tiny_model_dir), device="cpu")
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    queries = model.encode_query([q for q, _ in PAIRS], convert_to_tensor=True)
    passages = model.encode_document([p for _, p in PAIRS], convert_to_tensor=True)
    expected = torch.nn.functional.cosine_similarity(queries, passages).numpy()
    assert teacher.kind == BI_ENCODER
    np.testing.assert_allclose(teacher.score(PAIRS), expected, atol=1e-5)


def test_a_cross_encoder_teacher_scores_raw_logits(cross_encoder_dirs):
    _, saved = cross_encoder_dirs
    teacher = load_teacher(str(saved), device="cpu")
    model = CrossEncoder(str(saved), device="cpu")
    logits = model.predict(PAIRS, activation_fn=torch.nn.Identity())
    assert teacher.kind == CROSS_ENCODER
    np.testing.assert_allclose(teacher.score(PAIRS), logits, atol=1e-5)
    assert not np.allclose(teacher.score(PAIRS), model.predict(PAIRS), atol=1e-3)  # no sigmoid squashing


def test_rescore_replaces_only_the_scores(tiny_model_dir):
    example = TrainingExample(
        "what color is the apple",
        ("the apple is red",),
        ("the car is fast", "the sea"),
        (1.0, 2.0),
        pos_ids=("d1",),
        neg_ids=("d2", "d3"),
        pos_scores=(9.0,),
        neg_scores=(8.0, 7.0),
        query_id="q1",
    )
    teacher = load_teacher(str(tiny_model_dir), device="cpu")
    (rescored,) = rescore([example], teacher)
    assert rescored == example  # texts, ids and weights unchanged (scores are not part of equality)
    expected = teacher.score([(example.query, text) for text in (*example.pos, *example.neg)])
    np.testing.assert_allclose([*rescored.pos_scores, *rescored.neg_scores], expected, atol=1e-6)
    with pytest.raises(ValueError, match="teacher kind must be one of"):
        load_teacher(str(tiny_model_dir), kind="reranker")


def test_mine_with_a_teacher_writes_its_scores_and_trains_margin_mse(
    tiny_model_dir, tiny_beir, cross_encoder_dirs, tmp_path, capsys
):
    _, saved = cross_encoder_dirs
    out = tmp_path / "scored.jsonl"
    window = ["--range-min", "0", "--range-max", "6", "--num-negatives", "2"]
    code = main(["mine", str(tiny_beir), str(out), "--model", str(tiny_model_dir), *window, "--teacher", str(saved)])
    assert code == 0
    assert "(cross-encoder) scored" in capsys.readouterr().out
    examples = load_triplets(out)
    model = CrossEncoder(str(saved), device="cpu")
    for example in examples:
        pairs = [(example.query, text) for text in (*example.pos, *example.neg)]
        logits = model.predict(pairs, activation_fn=torch.nn.Identity())
        np.testing.assert_allclose([*example.pos_scores, *example.neg_scores], logits, atol=1e-5)

    config = build_config(
        overrides=[
            f"model.name_or_path={tiny_model_dir}",
            f"data.path={tiny_beir}",
            f"data.train_file={out}",
            f"runs_dir={tmp_path / 'runs'}",
            "loss.name=margin_mse",
            "loss.teacher_scale=1",
            "train.max_steps=2",
            "train.logging_steps=1",
            "train.batch_size=4",
            "data.dev_fraction=0.25",
        ]
    )
    assert run_training(config).metrics.loss_history


def test_a_missing_teacher_fails_before_mining(tiny_model_dir, tiny_beir, tmp_path, capsys, monkeypatch):
    def fail_if_called(*args, **kwargs):
        raise AssertionError("mined before the teacher was found")

    monkeypatch.setattr("embedtune.mining.mine.mine_hard_negatives", fail_if_called)
    out = tmp_path / "out.jsonl"
    args = ["mine", str(tiny_beir), str(out), "--model", str(tiny_model_dir), "--teacher", str(tmp_path / "nope")]
    assert main(args) == 2
    assert "nope" in capsys.readouterr().err and not out.exists()


def test_cli_teacher_kinds_mirror_the_library():
    from embedtune.cli import mine as cli

    assert cli.TEACHER_KINDS == teacher_module.TEACHER_KINDS
    assert json.dumps(cli.TEACHER_KINDS)
