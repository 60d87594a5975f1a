from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from embedtune.config import ConfigError
from embedtune.data.types import TrainingExample
from embedtune.mining.candidates import DenseEncoder, DropCounts, MiningInput, build_queries, merge_candidates
from embedtune.mining.mine import (
    MiningSettings,
    hardness_weights,
    load_mining_beir,
    load_mining_jsonl,
    mine_hard_negatives,
)
from embedtune.mining.output import MiningStats

QUERY = "What is X?"
POSITIVE = "the positive passage"
NEGATIVE_SCORES = [0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]


def unit(score: float) -> list[float]:
    """A 2-D unit vector whose cosine with the query vector (1, 0) is ``score``."""
    return [score, math.sqrt(1 - score**2)]


def fake_encoder(doc_scores: dict[str, float], query_vectors: dict[str, list[float]] | None = None) -> DenseEncoder:
    """Hand-built embeddings: every query is (1, 0) unless given; a document's cosine with it is its score."""
    queries = query_vectors or {}
    return DenseEncoder(
        encode_queries=lambda texts: torch.tensor([queries.get(text, [1.0, 0.0]) for text in texts]),
        encode_documents=lambda texts: torch.tensor([unit(doc_scores[text]) for text in texts]),
        similarity="cosine",
    )


def build_input(docs: list[tuple[str, str]], queries: list[tuple[str, str, tuple[str, ...]]]) -> MiningInput:
    """A MiningInput from ``(id, text)`` documents and ``(query id, text, positive ids)`` queries."""
    doc_ids, texts = [doc_id for doc_id, _ in docs], [text for _, text in docs]
    rows = {doc_id: row for row, doc_id in enumerate(doc_ids)}
    drafts = [
        (qid, text, tuple(texts[rows[p]] for p in pos), pos, tuple(rows[p] for p in pos), None)
        for qid, text, pos in queries
    ]
    return MiningInput(doc_ids, texts, build_queries(drafts), "test")


def scenario() -> tuple[MiningInput, DenseEncoder]:
    """One query; its positive (0.9), the same text under another id (0.88), its own text (0.95), 8 negatives."""
    scores = {POSITIVE: 0.9, "The  Positive passage": 0.88, "what is x?": 0.95}
    docs = [("own", "what is x?"), ("p1", POSITIVE), ("p1-copy", "The  Positive passage")]
    for number, score in enumerate(NEGATIVE_SCORES, start=1):
        scores[f"negative {number}"] = score
        docs.append((f"n{number}", f"negative {number}"))
    return build_input(docs, [("q1", QUERY, ("p1",))]), fake_encoder(scores)


def mine(settings: MiningSettings, data_encoder: tuple[MiningInput, DenseEncoder] | None = None):
    data, encoder = data_encoder or scenario()
    return mine_hard_negatives(data, settings, encoder)


def wide(**overrides) -> MiningSettings:
    values = {"range_min": 0, "range_max": 20, "num_negatives": 20} | overrides
    return MiningSettings(**values)


def test_never_returns_a_positive_or_the_query_itself() -> None:
    (example,), stats = mine(wide())

    assert example.neg_ids == tuple(f"n{i}" for i in range(1, 9))
    assert example.neg_scores == pytest.approx(NEGATIVE_SCORES)
    assert example.pos_ids == ("p1",) and example.pos_scores == pytest.approx((0.9,))
    assert example.query_id == "q1" and example.neg_sources == ()
    assert (stats.drops.positive, stats.drops.query) == (2, 1)  # by id and by normalised text; the query text
    assert (stats.queries, stats.negatives, stats.queries_without_negatives) == (1, 8, 0)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ((0, 10, 3), ["n1", "n2", "n3"]),
        ((2, 10, 3), ["n3", "n4", "n5"]),
        ((2, 5, 2), ["n3", "n4"]),
        ((6, 100, 5), ["n7", "n8"]),
    ],
)
def test_rank_window(window: tuple[int, int, int], expected: list[str]) -> None:
    range_min, range_max, num = window
    (example,), _ = mine(MiningSettings(range_min=range_min, range_max=range_max, num_negatives=num))
    assert list(example.neg_ids) == expected


@pytest.mark.parametrize(
    ("filters", "expected_first", "field", "dropped"),
    [
        ({"margin": 0.15}, "n3", "margin", 2),  # positive 0.9: above 0.75 drops 0.85, 0.8
        ({"relative_margin": 0.1}, "n2", "relative_margin", 1),  # above 0.9 - 0.09 = 0.81 drops 0.85
        ({"max_score": 0.65}, "n4", "max_score", 3),  # drops 0.85, 0.8, 0.7
        ({"margin": 0.0}, "n1", "margin", 0),
    ],
)
def test_margins_and_max_score(filters: dict, expected_first: str, field: str, dropped: int) -> None:
    (example,), stats = mine(wide(**filters))

    assert example.neg_ids[0] == expected_first
    assert len(example.neg_ids) == 8 - dropped
    assert getattr(stats.drops, field) == dropped


def test_candidates_are_the_best_range_max_plus_positives_plus_one_documents() -> None:
    # range_max 3 + 1 positive + 1 (the query's own text) = 5 retrieved: own, p1, p1-copy, n1, n2.
    (example,), stats = mine(MiningSettings(range_min=0, range_max=3, num_negatives=3))
    assert list(example.neg_ids) == ["n1", "n2"]
    assert (stats.drops.positive, stats.drops.query) == (2, 1)


def test_rank_window_counts_the_candidates_left_after_filtering() -> None:
    # As in sentence-transformers: margin drops n1, n2; ranks then start at n3, so range_min=1 skips n3.
    (example,), _ = mine(MiningSettings(range_min=1, range_max=8, num_negatives=2, margin=0.15))
    assert list(example.neg_ids) == ["n4", "n5"]


def test_margin_is_measured_from_the_best_positive() -> None:
    scores = {"pos a": 0.9, "pos b": 0.3, "near": 0.8, "close": 0.85, "far": 0.1}
    docs = [("a", "pos a"), ("b", "pos b"), ("near", "near"), ("close", "close"), ("far", "far")]
    data = build_input(docs, [("q", QUERY, ("a", "b"))])

    (example,), stats = mine(wide(margin=0.08), (data, fake_encoder(scores)))

    assert example.neg_ids == ("near", "far")  # threshold 0.9 - 0.08 = 0.82, not 0.3 - 0.08
    assert example.pos_ids == ("a", "b") and example.pos_scores == pytest.approx((0.9, 0.3))
    assert stats.drops.margin == 1


def test_queries_without_negatives_are_kept_and_counted() -> None:
    (example,), stats = mine(wide(max_score=0.1))
    assert example.neg == () and example.pos == (POSITIVE,)
    assert (stats.queries, stats.queries_without_negatives, stats.negatives_per_query) == (1, 1, 0.0)


def test_random_sampling_is_seeded_and_stays_in_the_window() -> None:
    settings = MiningSettings(range_min=1, range_max=7, num_negatives=3, sampling_strategy="random", seed=5)

    first = mine(settings)[0][0].neg_ids
    again = mine(settings)[0][0].neg_ids
    others = {mine(MiningSettings(**(settings.__dict__ | {"seed": seed})))[0][0].neg_ids for seed in range(10)}

    assert first == again
    assert len(first) == 3 and set(first) <= {f"n{i}" for i in range(2, 8)}
    assert list(first) == sorted(first)  # kept in rank order
    assert len(others) > 1


def test_chunking_and_faiss_search_give_the_same_negatives() -> None:
    reference = mine(wide())[0]
    chunked = mine(wide(chunk_size=2, query_batch_size=1))[0]
    hnsw = mine(wide(search="hnsw"))[0]
    assert chunked == reference == hnsw
    assert [e.neg_scores for e in chunked] == [e.neg_scores for e in reference]


LEXICAL_DOCS = [
    ("pos", "red apple pie recipe with cinnamon"),
    ("pie", "pie crust dough"),
    ("orchard", "an apple orchard in autumn"),
    ("car", "a red car on the road"),
    ("self", "red apple pie"),
    *[(f"x{i}", f"unrelated text number {word}") for i, word in enumerate(["one", "two", "three", "four", "five"])],
]


def test_bm25_retriever_needs_no_model() -> None:
    data = build_input(LEXICAL_DOCS, [("q", "red apple pie", ("pos",))])

    (example,), stats = mine_hard_negatives(data, wide(retriever="bm25"), encoder=None)

    assert set(example.neg_ids) == {"pie", "orchard", "car"}  # shares a word; not the positive nor the query text
    assert all(score > 0 for score in example.neg_scores)
    assert example.pos_scores[0] > max(example.neg_scores)
    assert (stats.drops.positive, stats.drops.query, stats.search) == (1, 1, None)


def test_both_retrievers_merge_and_record_their_sources() -> None:
    dense_scores = {"pos": 0.9, "pie": 0.85, "orchard": 0.2, "car": 0.1, "self": 0.95}
    dense_scores |= {f"x{i}": 0.8 - 0.05 * i for i in range(5)}
    scores = {text: dense_scores[doc_id] for doc_id, text in LEXICAL_DOCS}
    data = build_input(LEXICAL_DOCS, [("q", "red apple pie", ("pos",))])
    # depth = range_max + 1 positive + 1 = 7 of 10 documents: the dense list misses "orchard" and "car".
    settings = MiningSettings(retriever="both", range_min=0, range_max=5, num_negatives=5)

    (example,), _ = mine_hard_negatives(data, settings, fake_encoder(scores))

    found = dict(zip(example.neg_ids, zip(example.neg_sources, example.neg_scores, strict=True), strict=True))
    assert found["pie"][0] == ("dense", "bm25")
    assert found["orchard"] == (("bm25",), pytest.approx(0.2))  # the dense score, not the BM25 one
    assert found["car"] == (("bm25",), pytest.approx(0.1))
    assert found["x0"][0] == ("dense",)
    assert "pos" not in found and "self" not in found
    assert list(example.neg_ids) == ["pie", "x0", "orchard", "x1", "car"]  # dense, BM25, dense, BM25, ... merged


def test_merge_candidates_interleaves_and_deduplicates() -> None:
    assert merge_candidates([1, 2, 3], [4, 2, 5, 6]) == [
        (1, ("dense",)),
        (4, ("bm25",)),
        (2, ("dense", "bm25")),
        (3, ("dense",)),
        (5, ("bm25",)),
        (6, ("bm25",)),
    ]


def test_dense_mining_needs_an_encoder() -> None:
    with pytest.raises(ValueError, match="needs a dense model"):
        mine_hard_negatives(scenario()[0], wide(), encoder=None)


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"range_min": -1}, "--range-min"),
        ({"range_min": 5, "range_max": 5}, "--range-max"),
        ({"num_negatives": 0}, "--num-negatives"),
        ({"range_min": 0, "range_max": 3, "num_negatives": 4}, "--num-negatives"),
        ({"sampling_strategy": "best"}, "--sampling"),
        ({"retriever": "sparse"}, "--retriever"),
        ({"search": "flat"}, "--search"),
        ({"margin": float("nan")}, "--margin"),
        ({"relative_margin": -0.1}, "--relative-margin"),
        ({"max_score": float("inf")}, "--max-score"),
        ({"chunk_size": 0}, "--chunk-size"),
        ({"weight_alpha": -1.0}, "--weight-alpha"),
    ],
)
def test_bad_settings_name_the_option(overrides: dict, option: str) -> None:
    with pytest.raises(ConfigError, match=f"^{option}:"):
        MiningSettings(**overrides).check()


def test_hardness_weights_favour_harder_negatives() -> None:
    examples = [
        TrainingExample("a", ("p",), ("n1", "n2", "n3"), pos_scores=(0.9, 0.5), neg_scores=(0.85, 0.5, -0.4)),
        TrainingExample("b", ("p",), ("m1",), pos_scores=(0.3,), neg_scores=(0.2,)),
        TrainingExample("c", ("p",), (), pos_scores=(0.3,)),
    ]

    weighted = hardness_weights(examples, alpha=0.5)

    weights = [w for example in weighted for w in example.neg_weights]
    assert all(0.5 <= w <= 2.0 and math.isfinite(w) for w in weights)
    first = weighted[0].neg_weights
    assert first[0] > first[1] > first[2]  # gaps 0.05 < 0.4 < 1.3
    assert weighted[1].neg_weights[0] > 1  # gap 0.1: harder than average
    assert weighted[2].neg_weights == ()
    assert all(w == 1.0 for e in hardness_weights(examples, alpha=0.0) for w in e.neg_weights)
    same = [TrainingExample("a", ("p",), ("n", "m"), pos_scores=(1.0,), neg_scores=(0.5, 0.5))]
    assert hardness_weights(same)[0].neg_weights == (1.0, 1.0)


def test_weights_setting_writes_float32_safe_weights() -> None:
    (example,), _ = mine(wide(weights=True, weight_alpha=2.0))
    assert len(example.neg_weights) == 8
    assert example.neg_weights[0] == 2.0 and example.neg_weights[-1] == 0.5
    assert all(0.5 <= w <= 2.0 for w in example.neg_weights)


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    docs = [
        ("d1", "alpha beta"),
        ("d2", "gamma delta"),
        ("d3", "alpha gamma"),
        ("d4", "same text"),
        ("d5", "Same  Text"),
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs))
    queries = [("q1", "alpha?"), ("q2", "gamma?"), ("q3", "ALPHA?")]
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries))
    rows = "q1\td1\t1\nq1\td4\t2\nq2\td2\t0\nq3\td3\t1\n"
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def test_load_mining_beir(tmp_path: Path) -> None:
    data = load_mining_beir(write_beir(tmp_path / "beir"))

    assert data.doc_ids == ["d1", "d2", "d3", "d4", "d5"]
    assert [q.query_id for q in data.queries] == ["q1", "q3"]
    assert data.skipped_queries == 1  # q2 has only a score-0 judgement
    q1, q3 = data.queries
    assert (q1.pos_ids, q1.pos_rows, q1.pos) == (("d1", "d4"), (0, 3), ("alpha beta", "same text"))
    # Same normalised query text: q1 and q3 share their positives as exclusions.
    assert q1.exclusions == q3.exclusions
    assert q1.exclusions.ids == {"d1", "d3", "d4"} and "alpha gamma" in q1.exclusions.texts


def test_beir_exclusions_hold_in_mining(tmp_path: Path) -> None:
    data = load_mining_beir(write_beir(tmp_path / "beir"))
    encoder = fake_encoder(
        {"alpha beta": 0.9, "gamma delta": 0.1, "alpha gamma": 0.8, "same text": 0.7, "Same  Text": 0.7}
    )

    examples, _ = mine_hard_negatives(data, wide(), encoder)

    assert [e.neg_ids for e in examples] == [("d2",), ("d2",)]  # d5 has a positive's text


def test_load_mining_beir_errors(tmp_path: Path) -> None:
    from embedtune.errors import DataError

    folder = write_beir(tmp_path / "beir")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t0\n")
    with pytest.raises(DataError, match="no query with a relevant document"):
        load_mining_beir(folder)
    with pytest.raises(DataError, match="dev.tsv"):
        load_mining_beir(folder, "dev")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_load_mining_jsonl_builds_its_corpus_from_the_file(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"query": "what is x", "pos": ["x one"], "neg": ["n one", "x two"], "phase": "easy"},
            {"query": "What is  X", "pos": ["x two"], "pos_ids": ["X2"], "query_id": "Q2"},
            {"query": "other", "pos": ["N one"], "neg_ids": [], "neg": []},
        ],
    )

    data = load_mining_jsonl(path)

    assert data.texts == ["x one", "n one", "x two"]  # distinct normalised texts, file order
    assert data.doc_ids == ["p0", "p1", "p2"]
    first, second, third = data.queries
    assert (first.query_id, first.pos_ids, first.phase) == ("record1", ("p0",), "easy")
    assert (second.query_id, second.pos_ids, second.pos_rows) == ("Q2", ("p2",), (2,))
    assert first.exclusions.texts == {"x one", "x two"}  # same query text on two lines
    assert third.pos_rows == (1,)

    examples, _ = mine_hard_negatives(data, wide(), fake_encoder({"x one": 0.9, "n one": 0.5, "x two": 0.8}))
    assert [e.neg for e in examples] == [("n one",), ("n one",), ("x one", "x two")]
    assert examples[0].phase == "easy"


def test_load_mining_jsonl_with_a_corpus_file(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [{"query": "q", "pos": ["Doc  A"], "neg": ["ignored"]}, {"query": "r", "pos": ["new"], "pos_ids": ["c2"]}],
    )
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "c1", "text": "doc a"}, {"id": "c2", "text": "doc b"}])

    data = load_mining_jsonl(path, corpus)

    assert data.doc_ids == ["c1", "c2"] and data.texts == ["doc a", "doc b"]
    assert [q.pos_ids for q in data.queries] == [("c1",), ("c2",)]  # by normalised text; by the given id


def test_load_mining_jsonl_appends_missing_positives_and_rejects_conflicting_ids(tmp_path: Path) -> None:
    from embedtune.errors import DataError

    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "p0", "text": "doc a"}])
    path = write_jsonl(tmp_path / "train.jsonl", [{"query": "q", "pos": ["missing"]}])
    data = load_mining_jsonl(path, corpus)
    assert data.doc_ids == ["p0", "p1"] and data.texts == ["doc a", "missing"]

    clash = write_jsonl(
        tmp_path / "clash.jsonl",
        [{"query": "q", "pos": ["a"], "pos_ids": ["d"]}, {"query": "r", "pos": ["b"], "pos_ids": ["d"]}],
    )
    with pytest.raises(DataError, match="given to two different passages") as err:
        load_mining_jsonl(clash)
    assert err.value.path == clash and err.value.field == "pos_ids"


@pytest.mark.parametrize(
    ("without", "drops", "hinted"),
    [
        (6, DropCounts(relative_margin=40), True),  # most queries empty, the filters emptied them
        (6, DropCounts(max_score=1, margin=2), True),
        (5, DropCounts(relative_margin=40), False),  # half is not most
        (6, DropCounts(positive=10, duplicate=3), False),  # no score filter: a short window, not a weak miner
        (0, DropCounts(), False),
    ],
)
def test_sparse_negatives_hint_names_the_filters_and_the_fix(without, drops, hinted):
    stats = MiningStats(
        queries=10,
        negatives=4,
        queries_without_negatives=without,
        skipped_queries=0,
        num_docs=50,
        retriever="dense",
        search="exact",
        drops=drops,
    )

    hint = stats.sparse_negatives_hint()

    assert (hint is not None) == hinted
    if hinted:
        filtered = drops.margin + drops.relative_margin + drops.max_score
        assert f"{without / 10:.0%} of queries" in hint and f"{filtered:,} candidates" in hint
        assert "--model" in hint and "margin_mse" in hint
