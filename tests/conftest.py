"""Shared fixtures: a tiny randomly initialised BERT sentence-transformer and a tiny BEIR folder (no downloads)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

WORDS = (
    "apple banana cherry grape lemon mango orange peach pear plum red green yellow blue sweet sour fruit tree "
    "juice seed car bus train plane road wheel engine fuel fast slow city river mountain sea lake forest "
    "what which is the a of and color taste grows on in"
).split()

SHARED_SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scifact"


def build_tiny_model(folder: Path) -> Path:
    """Write a randomly initialised 2-layer BERT with mean pooling as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    hf_dir = folder / "hf"
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = models.Transformer(str(hf_dir), max_seq_length=32)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    assert "[UNK]" not in model.tokenizer.tokenize("what color is the apple"), "tiny tokenizer lost its vocabulary"
    model_dir = folder / "st"
    model.save(str(model_dir))
    return model_dir


@pytest.fixture(autouse=True)
def isolated_embedding_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the embedding cache at a fresh folder per test, never at the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("embedding-cache")
    monkeypatch.setenv("EMBEDTUNE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def cuda_peak_memory(request: pytest.FixtureRequest):
    """With ``EMBEDTUNE_CUDA_MEMORY_REPORT=<folder>`` on a CUDA machine, log each test's peak GPU memory there.

    One ``cuda-peak-<worker>.tsv`` per pytest-xdist worker, lines ``allocated bytes, reserved bytes, test id``:
    tools/gpu_check.sh uses it to find the tests that take far more GPU memory than a tiny model needs.
    """
    folder = os.environ.get("EMBEDTUNE_CUDA_MEMORY_REPORT")
    if not folder:
        yield
        return
    import torch  # only when asked for: most test files never need it at collection time

    if not torch.cuda.is_available():
        yield
        return
    torch.cuda.reset_peak_memory_stats()
    yield
    allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(Path(folder) / f"cuda-peak-{worker}.tsv", "a", encoding="utf-8") as log:
        log.write(f"{allocated}\t{reserved}\t{request.node.nodeid}\n")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


FRUITS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum"]
VEHICLES = ["car", "bus", "train", "plane"]


def write_tiny_beir(folder: Path) -> Path:
    """Write a 14-document BEIR folder with train/test qrels (dev is carved from train)."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = [
        {"_id": f"d{i}", "title": name, "text": f"the {name} is sweet fruit on a tree"}
        for i, name in enumerate(FRUITS)
    ]
    docs += [
        {"_id": f"v{i}", "title": name, "text": f"the {name} is fast on the road"} for i, name in enumerate(VEHICLES)
    ]
    queries = [{"_id": f"q{i}", "text": f"what color is the {name}"} for i, name in enumerate(FRUITS + VEHICLES)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    doc_ids = [d["_id"] for d in docs]
    train = [(f"q{i}", doc_ids[i]) for i in range(10)]
    test = [(f"q{i}", doc_ids[i]) for i in range(10, 14)]
    for split, rows in (("train", train), ("test", test)):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, d in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture()
def tiny_beir(tmp_path: Path) -> Path:
    return write_tiny_beir(tmp_path / "beir")


NOISE_WORDS = ["the", "a", "of", "and", "is", "what", "which"]


def write_noise_beir(folder: Path) -> Path:
    """A set where fine-tuning reliably helps on held-out queries, for the tiny model.

    Each query is an item word plus seven noise words; its one relevant document repeats the item word, and every
    distractor is the noise words plus another word. Mean pooling makes the untouched model prefer the distractors
    (dev and test nDCG@10 = 0); learning to ignore the noise words, which every query shares, carries over to
    queries never trained on.
    """
    items = [word for word in WORDS if word not in NOISE_WORDS][:30]
    others = [word for word in WORDS if word not in NOISE_WORDS and word not in items]
    docs = [{"_id": f"d{i}", "text": f"{word} {word}"} for i, word in enumerate(items)]
    docs += [{"_id": f"x{i}", "text": " ".join([*NOISE_WORDS, word])} for i, word in enumerate(others)]
    queries = [{"_id": f"q{i}", "text": " ".join([word, *NOISE_WORDS])} for i, word in enumerate(items)]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for split, ids in (("train", range(0, 24)), ("test", range(24, 30))):
        rows = "".join(f"q{i}\td{i}\t1\n" for i in ids)
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


@pytest.fixture()
def noise_beir(tmp_path: Path) -> Path:
    return write_noise_beir(tmp_path / "noise")
