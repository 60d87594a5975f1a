"""The data section of a run's configuration (``data.*``), and the path and seed rules every section shares."""

from __future__ import annotations

import os
from dataclasses import dataclass

from embedtune.config.values import _check_fields, _require, _setting
from embedtune.errors import shorten

MAX_SEED = 2**32 - 1  # data.split_seed and train.seed lie in [0, MAX_SEED]
TEST_SPLIT_BY = ("query", "document")
"""Values of ``data.test_split_by``: carve held-out queries one by one, or by groups sharing relevant documents."""
TRAINED_SPLIT = "train"
"""The qrels split a run trains on (and carves dev and test from): never a split to report."""


def _path(value: str, key: str) -> str:
    _require(bool(value.strip()), key, "must not be empty")
    _require("\0" not in value, key, "must not contain a NUL character")
    return os.path.expanduser(value)


MIX_SAMPLING = ("proportional", "round_robin")
"""Values of ``data.mix_sampling`` (sentence-transformers' ``MultiDatasetBatchSamplers``)."""


@dataclass
class DataConfig:
    """Where the training and evaluation data come from. Raises ConfigError (``data.<key>: ...``) on a bad value."""

    path: str | None = _setting(None, "BEIR folder (corpus.jsonl, queries.jsonl, qrels/{train,dev,test}.tsv).")
    train_file: str | None = _setting(
        None, "JSONL training file {query, pos, neg, neg_weights}; replaces the BEIR train qrels as training data."
    )
    test_fraction: float = _setting(
        0.1,
        "Share of train queries carved out as test (before dev) when the data has no test split; 0 asks for no test "
        "split, and the final figures are then reported on dev, labelled as the selection split.",
    )
    dev_fraction: float = _setting(0.1, "Share of train queries carved out as dev when there is no dev split.")
    split_seed: int = _setting(42, "Seed of the dev split.")
    test_split_by: str = _setting(
        "query",
        "How test and dev are carved when the data does not ship them: 'query' (queries drawn one by one; a test "
        "query may share a relevant document with training) or 'document' (whole groups of queries linked by "
        "shared relevant documents, so no test or dev query has a relevant document that is a training positive: "
        "every reported query is unseen). 'document' needs a carved reported split.",
    )
    dev_split_by: str | None = _setting(
        None,
        "How dev is carved when the data ships no dev split: 'query' or 'document'; unset follows "
        "data.test_split_by. 'document' also works beside a shipped test split: checkpoints, the WiSE-FT share and "
        "tune trials are then chosen on queries whose relevant documents were never training positives.",
    )
    eval_split: str = _setting(
        "test",
        "Split reported at the end, base vs fine-tuned (never used for selection): test, dev (no held-out split) or "
        "another split the BEIR folder ships; never train.",
    )
    mix: list[str] = _setting(
        None,
        "More training data mixed in: BEIR folders (their train qrels) or training JSONL files. Each source is its "
        "own dataset and a batch never mixes sources, so in-batch negatives stay meaningful; dev and test stay the "
        "run's own.",
        default_factory=list,
    )
    mix_sampling: str = _setting(
        "proportional",
        "How batches are drawn across data.mix: 'proportional' (every row of every source once per epoch) or "
        "'round_robin' (one batch per source in turn, until the smallest runs out).",
    )
    max_hard_negatives: int = _setting(3, "Hard negatives per query used in training (the first n of 'neg').")
    feature_weights: str | None = _setting(
        None,
        "JSON/YAML weight config {features: {name: weight}, default, combine: max|sum|product} turning each "
        "record's neg_features into neg_weights.",
    )
    dev_max_corpus: int | None = _setting(
        1000,
        "Dev evaluation during training ranks a candidate pool of at most this many documents (speed); None uses "
        "the whole corpus. Test always uses the whole corpus.",
    )
    dev_candidates: str = _setting(
        "base_top_k",
        "How the dev pool is chosen: 'base_top_k' (judged documents, each dev query's top 20 under the base model, "
        "then random ones: hard to rank) or 'random' (judged documents plus a seeded random sample).",
    )

    @property
    def dev_carving(self) -> str:
        """How dev is carved when not shipped: ``dev_split_by``, else ``test_split_by`` (one of TEST_SPLIT_BY)."""
        return self.dev_split_by or self.test_split_by

    def __post_init__(self) -> None:
        _check_fields(self, "data.")
        self.path = None if self.path is None else _path(self.path, "data.path")
        self.train_file = None if self.train_file is None else _path(self.train_file, "data.train_file")
        self.feature_weights = (
            None if self.feature_weights is None else _path(self.feature_weights, "data.feature_weights")
        )
        _require(0 <= self.test_fraction < 1, "data.test_fraction", f"must be in [0, 1), got {self.test_fraction}")
        _require(0 < self.dev_fraction < 1, "data.dev_fraction", f"must be in (0, 1), got {self.dev_fraction}")
        _require(0 <= self.split_seed <= MAX_SEED, "data.split_seed", f"must be an integer in [0, {MAX_SEED}]")
        _require(
            self.test_split_by in TEST_SPLIT_BY,
            "data.test_split_by",
            f"must be one of {', '.join(TEST_SPLIT_BY)}, got {shorten(self.test_split_by)}",
        )
        _require(
            self.dev_split_by in (None, *TEST_SPLIT_BY),
            "data.dev_split_by",
            f"must be one of {', '.join(TEST_SPLIT_BY)} (or unset), got {shorten(str(self.dev_split_by))}",
        )
        _require(bool(self.eval_split.strip()), "data.eval_split", "must not be empty")
        _require(
            self.eval_split != TRAINED_SPLIT,
            "data.eval_split",
            "'train' is the split the run trains on (and carves dev and test from), so a report on it would measure "
            "memorisation; report on test (the default), dev, or another split the folder ships",
        )
        self.mix = [_path(path, "data.mix") for path in self.mix]
        _require(
            self.mix_sampling in MIX_SAMPLING,
            "data.mix_sampling",
            f"must be one of {', '.join(MIX_SAMPLING)}, got {shorten(self.mix_sampling)}",
        )
        _require(self.max_hard_negatives >= 0, "data.max_hard_negatives", "must be >= 0")
        _require(self.dev_max_corpus is None or self.dev_max_corpus > 0, "data.dev_max_corpus", "must be > 0")
        _require(
            self.dev_candidates in ("base_top_k", "random"),
            "data.dev_candidates",
            f"must be 'base_top_k' or 'random', got {shorten(self.dev_candidates)}",
        )
