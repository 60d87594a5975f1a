"""False-negative masking (table and guide model) against loop-by-loop references that delete the masked candidates."""

from __future__ import annotations

import gc
import random
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer, models
from transformers import BertConfig, BertModel, BertTokenizerFast

from embedtune.losses.false_negatives import FalseNegativeTable
from embedtune.losses.guide import GuideModel
from embedtune.losses.info_nce import InfoNCELoss
from tests.conftest import WORDS
from tests.losses.references import (
    guide_flagged,
    hand_table,
    mask_from,
    passage_to_query_loss,
    query_to_candidates_loss,
    random_columns,
    reference_mask,
    with_rows,
)

ATOL = 1e-5

# Six table rows, [positive, negative_1, negative_2] and the names relevant to the row's query. Rows 0 and 4 are
# two records of one query (A and B both relevant); row 5's query has document d1 relevant, which row 1's second
# negative is (by id, its text Y is unrelated); rows 2 and 3 are never in the batch.
TABLE_ROWS = [
    (["A", "X", "B"], {"A", "B"}),
    (["C", "A", {"Y", "id:d1"}], {"C"}),
    (["E", "F", "G"], {"E"}),
    (["H", "I", "J"], {"H"}),
    (["B", "A", "W"], {"A", "B"}),
    ([{"D", "id:d7"}, "V", "C"], {"D", "id:d7", "id:d1"}),
]
BATCH_ROWS = [4, 1, 5, 0]  # batch row -> table row
# Read off by hand, (query i, column c, batch row j): what the table must drop from each query's denominator.
TABLE_MASKED = {
    (0, 0, 3),  # query of row 4: positive A of row 0
    (0, 1, 0),  # its own negative A
    (0, 1, 1),  # row 1's negative A
    (0, 2, 3),  # row 0's negative B
    (1, 2, 2),  # query of row 1: row 5's negative C is its positive
    (2, 2, 1),  # query of row 5: row 1's negative is document d1
    (3, 0, 0),  # query of row 0: positive B of row 4
    (3, 1, 0),
    (3, 1, 1),
    (3, 2, 3),  # its own negative B
}
# Passage i, query j: passage i is relevant to query j.
TABLE_PASSAGE_MASKED = {(3, 0), (0, 3)}


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> SentenceTransformer:
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.eval()
    return model


class FixedTable:
    """Stands in for a FalseNegativeTable: marks exactly the given ``(i, c, j)`` triples, target included if asked."""

    def __init__(self, triples: set[tuple[int, int, int]]) -> None:
        self.triples = triples

    def query_to_candidates_mask(self, rows: torch.Tensor, num_columns: int) -> torch.Tensor:
        return mask_from(self.triples, rows.shape[0], num_columns)


def everything(batch: int, num_columns: int) -> set[tuple[int, int, int]]:
    return {(i, c, j) for i in range(batch) for c in range(num_columns) for j in range(batch)}


def random_weights(batch: int, num_negatives: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.25 + 3 * torch.rand(batch, num_negatives, generator=generator)


# ------------------------------------------------------------------------------------------------ the table


def test_the_hand_made_table_marks_the_hand_listed_candidates():
    table = hand_table(TABLE_ROWS)
    mask = table.query_to_candidates_mask(torch.tensor(BATCH_ROWS, dtype=torch.float32), 3)
    assert torch.equal(mask, mask_from(TABLE_MASKED, 4, 3))


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_table_masking_deletes_exactly_the_marked_candidates(symmetric, scale):
    columns = random_columns(4, 2, seed=3)
    weights = random_weights(4, 2, seed=4)
    loss_fn = InfoNCELoss(model=None, scale=scale, symmetric=symmetric, false_negatives=hand_table(TABLE_ROWS))

    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(weights, BATCH_ROWS))

    query_loss = query_to_candidates_loss(columns, weights.tolist(), scale, TABLE_MASKED)
    passage_loss = passage_to_query_loss(columns, scale, TABLE_PASSAGE_MASKED)
    expected = (query_loss + passage_loss) / 2 if symmetric else query_loss
    assert loss.item() == pytest.approx(expected, abs=ATOL)
    parts = loss_fn.components.pop_means()
    assert parts["infonce_query_to_doc"] == pytest.approx(query_loss, abs=ATOL)
    if symmetric:
        assert parts["infonce_doc_to_query"] == pytest.approx(passage_loss, abs=ATOL)
    assert parts["masked_candidates"] == len(TABLE_MASKED)
    # The masking matters here: without it the figure differs by far more than the tolerance.
    unmasked = query_to_candidates_loss(columns, weights.tolist(), scale)
    assert abs(query_loss - unmasked) > 10 * ATOL


def test_the_table_is_read_at_the_rows_of_the_labels():
    # The same embeddings in table rows 0..3 (no shared queries among rows 0-3 but rows 0/1 via A) mask differently.
    columns = random_columns(4, 2, seed=5)
    weights = torch.ones(4, 2)
    loss_fn = InfoNCELoss(model=None, scale=20.0, false_negatives=hand_table(TABLE_ROWS))
    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(weights, [0, 1, 2, 3]))
    # Rows 0..3: query of row 0 (A, B relevant) drops row 1's negative A and its own negative B.
    expected = query_to_candidates_loss(columns, weights.tolist(), 20.0, {(0, 1, 1), (0, 2, 0)})
    assert loss.item() == pytest.approx(expected, abs=ATOL)


def test_masked_candidates_counts_only_masked_candidates_that_are_not_padding():
    columns = random_columns(4, 2, seed=6)
    weights = random_weights(4, 2, seed=7)
    weights[3, 1] = 0.0  # padding slot (2, 3): two table-masked candidates sit in it
    weights[2, 0] = 0.0  # padding slot (1, 2): nothing masked there
    loss_fn = InfoNCELoss(model=None, scale=20.0, false_negatives=hand_table(TABLE_ROWS))

    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(weights, BATCH_ROWS))

    padded = {(c, j) for j in range(4) for c in (1, 2) if weights[j, c - 1] == 0}
    finite_masked = [(i, c, j) for i, c, j in TABLE_MASKED if (c, j) not in padded]
    assert len(finite_masked) == len(TABLE_MASKED) - 2
    assert loss_fn.components.pop_means()["masked_candidates"] == len(finite_masked)
    expected = query_to_candidates_loss(columns, weights.tolist(), 20.0, TABLE_MASKED)
    assert loss.item() == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("symmetric", [False, True])
def test_the_target_is_never_masked_even_when_the_table_marks_it(symmetric):
    columns = [c.requires_grad_(True) for c in random_columns(4, 1, seed=8)]
    marks = {(i, 0, i) for i in range(4)} | {(0, 1, 2), (2, 0, 1), (1, 0, 3)}  # every target, and three others
    loss_fn = InfoNCELoss(model=None, scale=20.0, symmetric=symmetric, false_negatives=FixedTable(marks))

    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(torch.ones(4, 1)))

    others = {(i, c, j) for i, c, j in marks if (c, j) != (0, i)}
    passage = {(j, i) for i, c, j in others if c == 0}  # passage j is one of query i's positives
    expected = query_to_candidates_loss(columns, None, 20.0, others)
    if symmetric:
        expected = (expected + passage_to_query_loss(columns, 20.0, passage)) / 2
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected, abs=ATOL)
    assert loss_fn.components.pop_means()["masked_candidates"] == len(others)
    loss.backward()
    assert all(torch.isfinite(c.grad).all() for c in columns)


@pytest.mark.parametrize("symmetric", [False, True])
def test_marking_every_candidate_leaves_only_the_target(symmetric):
    columns = random_columns(3, 2, seed=9)
    loss_fn = InfoNCELoss(model=None, scale=20.0, symmetric=symmetric, false_negatives=FixedTable(everything(3, 3)))
    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(torch.ones(3, 2)))
    all_but_targets = {(i, c, j) for i, c, j in everything(3, 3) if (c, j) != (0, i)}
    expected = query_to_candidates_loss(columns, None, 20.0, all_but_targets)
    assert expected == pytest.approx(0.0, abs=1e-12)  # -log(1): the target alone in its denominator
    assert loss.item() == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("symmetric", [False, True])
def test_masking_a_whole_column_equals_weight_zero(symmetric):
    # Weight 0 (padding) drops a candidate for every query; masking it for every query must give the same.
    batch, owner = 4, 2
    base = random_columns(batch, 2, seed=10)
    weights = random_weights(batch, 2, seed=11)
    marks = {(i, 1, owner) for i in range(batch)}
    masked_columns = [c.clone().requires_grad_(True) for c in base]
    masked = InfoNCELoss(model=None, scale=20.0, symmetric=symmetric, false_negatives=FixedTable(marks))
    masked_loss = masked.compute_loss_from_embeddings(masked_columns, with_rows(weights))
    padded_weights = weights.clone()
    padded_weights[owner, 0] = 0.0
    padded_columns = [c.clone().requires_grad_(True) for c in base]
    padded = InfoNCELoss(model=None, scale=20.0, symmetric=symmetric)
    padded_loss = padded.compute_loss_from_embeddings(padded_columns, with_rows(padded_weights))

    assert masked_loss.item() == pytest.approx(padded_loss.item(), abs=ATOL)
    masked_loss.backward()
    padded_loss.backward()
    for ours, theirs in zip(masked_columns, padded_columns, strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, atol=ATOL, rtol=0)
    assert torch.all(masked_columns[2].grad[owner] == 0)


@pytest.mark.parametrize("symmetric", [False, True])
def test_masking_a_candidate_equals_removing_it(symmetric):
    # Batch of one: masking the query's first negative is the same as not giving that column at all.
    query, positive, first, second = random_columns(1, 2, seed=12)
    weights = torch.tensor([[1.7, 0.6]])
    masked = InfoNCELoss(model=None, scale=20.0, symmetric=symmetric, false_negatives=FixedTable({(0, 1, 0)}))
    loss = masked.compute_loss_from_embeddings([query, positive, first, second], with_rows(weights))
    removed = InfoNCELoss(model=None, scale=20.0, symmetric=symmetric).compute_loss_from_embeddings(
        [query, positive, second], with_rows(weights[:, 1:])
    )
    assert loss.item() == pytest.approx(removed.item(), abs=ATOL)
    assert masked.components.pop_means()["masked_candidates"] == 1


# ------------------------------------------------------------------------------------------------ the guide


@pytest.mark.parametrize("strategy", ["absolute", "relative"])
@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_guide_mask_matches_its_definition(model, strategy, margin):
    generator = torch.Generator().manual_seed(13)
    similarities = 2 * torch.rand(5, 7, generator=generator) - 1
    positive = 0.1 + 0.8 * torch.rand(5, generator=generator)  # positive similarities: both strategies agree on sign
    mask = GuideModel(model, margin=margin, strategy=strategy).mask(similarities, positive)
    for i in range(5):
        p = positive[i].item()
        threshold = p - margin if strategy == "absolute" else p * (1 - margin)
        for k in range(7):
            assert bool(mask[i, k]) is (similarities[i, k].item() > threshold), (i, k)


@pytest.mark.parametrize("strategy", ["absolute", "relative"])
@pytest.mark.parametrize("positive", [0.6, 0.05, -0.4])
def test_guide_masks_every_candidate_scoring_above_the_positive(model, strategy, positive):
    # The margin says how far *below* the positive a candidate may score and stay; a margin never spares a
    # candidate the guide scores above the positive, whatever the sign of the positive's similarity.
    guide = GuideModel(model, margin=0.5, strategy=strategy)
    candidates = torch.tensor([[positive + 0.01, positive + 0.05, positive + 0.1]])
    assert guide.mask(candidates, torch.tensor([positive])).all()


def test_guide_margin_and_strategy_are_checked(model):
    with pytest.raises(ValueError, match="strategy"):
        GuideModel(model, strategy="percent")
    with pytest.raises(ValueError, match="margin"):
        GuideModel(model, margin=-0.1)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize(("strategy", "margin"), [("absolute", 0.05), ("absolute", 0.3), ("relative", 0.2)])
def test_guide_masking_deletes_exactly_what_the_guide_flags(model, symmetric, strategy, margin):
    columns = random_columns(4, 2, seed=14)
    guide_columns = random_columns(4, 2, dim=6, seed=15)
    near = guide_columns[0] + 1.5 * guide_columns[1]  # positives near their queries: positive similarities > 0
    guide_columns[1] = near / near.norm(dim=1, keepdim=True)
    assert (torch.cosine_similarity(guide_columns[0], guide_columns[1]) > 0).all()
    guide = GuideModel(model, margin=margin, strategy=strategy)
    loss_fn = InfoNCELoss(model=None, scale=20.0, symmetric=symmetric, guide=guide)
    weights = random_weights(4, 2, seed=16)

    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(weights), guide_columns)

    query_flags, passage_flags = guide_flagged(guide_columns, margin, strategy)
    assert query_flags, "the guide should flag something in this batch"
    query_loss = query_to_candidates_loss(columns, weights.tolist(), 20.0, query_flags)
    expected = query_loss
    if symmetric:
        expected = (query_loss + passage_to_query_loss(columns, 20.0, passage_flags)) / 2
    assert loss.item() == pytest.approx(expected, abs=ATOL)
    parts = loss_fn.components.pop_means()
    assert parts["masked_candidates"] == len(query_flags)


@pytest.mark.parametrize("margin", [0.0, 0.3, 3.0])
def test_masked_by_guide_counts_the_candidates_only_the_guide_removed(model, margin):
    # Targets are never removed, and what the table already removed is not the guide's doing.
    columns = random_columns(4, 2, seed=17)
    guide_columns = random_columns(4, 2, dim=6, seed=18)
    loss_fn = InfoNCELoss(
        model=None, scale=20.0, false_negatives=hand_table(TABLE_ROWS), guide=GuideModel(model, margin=margin)
    )
    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(torch.ones(4, 2), BATCH_ROWS), guide_columns)

    query_flags, _ = guide_flagged(guide_columns, margin)
    by_guide_only = query_flags - TABLE_MASKED
    parts = loss_fn.components.pop_means()
    assert parts["masked_by_guide"] == len(by_guide_only)
    assert parts["masked_candidates"] == len(query_flags | TABLE_MASKED)
    expected = query_to_candidates_loss(columns, None, 20.0, query_flags | TABLE_MASKED)
    assert loss.item() == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("symmetric", [False, True])
def test_the_target_is_never_masked_even_when_the_guide_marks_it(model, symmetric):
    # With margin 3 every candidate, each target included, is above "positive - 3": only the targets remain.
    columns = [c.requires_grad_(True) for c in random_columns(3, 1, seed=19)]
    guide_columns = random_columns(3, 1, dim=6, seed=20)
    loss_fn = InfoNCELoss(model=None, scale=20.0, symmetric=symmetric, guide=GuideModel(model, margin=3.0))
    assert GuideModel(model, margin=3.0).mask(torch.tensor([[0.5]]), torch.tensor([0.5])).all()  # target marked
    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(torch.ones(3, 1)), guide_columns)
    all_but_targets = {(i, c, j) for i, c, j in everything(3, 2) if (c, j) != (0, i)}
    expected = query_to_candidates_loss(columns, None, 20.0, all_but_targets)
    if symmetric:
        other_queries = {(i, j) for i in range(3) for j in range(3) if i != j}
        expected = (expected + passage_to_query_loss(columns, 20.0, other_queries)) / 2
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected, abs=ATOL)
    loss.backward()
    assert all(torch.isfinite(c.grad).all() for c in columns)


QUERIES = ["what color is the apple", "which fruit is red", "what is the fast car", "the sea and the lake"]
POSITIVES = ["the apple is red fruit", "the apple is red fruit", "the car is fast on the road", "the blue sea"]
NEGATIVES = ["the bus is slow", "the pear is green", "the train", "the mountain and the forest"]


def test_guide_copy_of_the_model_masks_a_duplicate_of_the_positive(model):
    # Rows 0 and 1 have the same positive text: for query 0, row 1's positive is its own positive again (and the
    # other way round). A guide that is the model itself scores it exactly as the positive; with margin 0 it must go.
    texts = [QUERIES, POSITIVES, NEGATIVES]
    features = [model.preprocess(column) for column in texts]
    loss_fn = InfoNCELoss(model, scale=20.0, guide=GuideModel(model, margin=0.0))
    with torch.no_grad():
        loss = loss_fn(features, None)
        embeddings = [model.encode(column, convert_to_tensor=True) for column in texts]

    flagged, _ = guide_flagged(embeddings, 0.0)  # strictly above the positive
    duplicates = {
        (i, c, j)
        for i in range(4)
        for c, column in enumerate(texts[1:])
        for j in range(4)
        if (c, j) != (0, i) and column[j] == POSITIVES[i]
    }
    assert duplicates == {(0, 0, 1), (1, 0, 0)}
    expected_masked = flagged | duplicates
    parts = loss_fn.components.pop_means()
    assert parts["masked_by_guide"] == len(expected_masked)
    assert loss.item() == pytest.approx(query_to_candidates_loss(embeddings, None, 20.0, expected_masked), abs=1e-4)


def test_guide_is_a_frozen_copy_taken_when_it_is_built(tiny_model_dir):
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    guide = GuideModel(model)
    features = [model.preprocess(["the apple is red"])]
    before = guide.embed(features)[0].clone()
    assert not any(p.requires_grad for p in guide.guide.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the trained model is left trainable
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1)
    fresh = [model.preprocess(["the apple is red"])]
    torch.testing.assert_close(guide.embed(fresh)[0], before)
    assert not torch.allclose(model.encode(["the apple is red"], convert_to_tensor=True), before, atol=1e-3)


def test_guide_embeds_each_column_once_per_batch_and_leaves_the_features_alone(model):
    guide = GuideModel(model)
    features = [model.preprocess(column) for column in (QUERIES, POSITIVES)]
    snapshot = [dict(column) for column in features]
    first = guide.embed(features)
    assert guide.embed(features) is first  # MatryoshkaLoss calls the loss once per dimension on the same batch
    assert [set(column) for column in features] == [set(column) for column in snapshot]
    for column, before in zip(features, snapshot, strict=True):
        assert all(column[key] is before[key] for key in before)
    for embedded, texts in zip(first, (QUERIES, POSITIVES), strict=True):
        torch.testing.assert_close(embedded, guide.guide.encode(texts, convert_to_tensor=True), atol=1e-5, rtol=0)


def test_guide_embeds_a_new_batch_even_when_its_tensors_reuse_the_old_ones_addresses(model):
    # The trainer frees each batch before building the next, so a new batch's tensors can be allocated where the
    # last batch's were (same id()). The guide must embed the new batch, not hand back the last one's embeddings.
    guide = GuideModel(model)
    first = [model.preprocess(["the apple is red", "the car"]), model.preprocess(["the bus is slow", "a tree"])]
    old_ids = [id(column["input_ids"]) for column in first]
    guide.embed(first)
    new_texts = (["the sea is blue", "a lake"], ["the plum grows", "the road"])
    second = [model.preprocess(texts) for texts in new_texts]
    del first
    gc.collect()
    # Fresh tensors fill the freed slots: where one lands at an old batch tensor's address, it carries the new ids.
    pool = [torch.empty(0, dtype=torch.long) for _ in range(50_000)]
    by_id = {id(tensor): tensor for tensor in pool}
    for column, old in zip(second, old_ids, strict=True):
        if old in by_id:  # always so here unless the guide keeps the old batch alive, which also avoids the mix-up
            recycled = by_id[old]
            recycled.set_(column["input_ids"].clone())
            column["input_ids"] = recycled
    embedded = guide.embed(second)
    for column, texts in zip(embedded, new_texts, strict=True):
        torch.testing.assert_close(column, guide.guide.encode(texts, convert_to_tensor=True), atol=1e-5, rtol=0)


def build_other_vocab_model(folder: Path, hidden_size: int = 16) -> SentenceTransformer:
    """Like conftest's tiny model, but its own vocabulary (reversed word order, extra words) and width."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zebra", "violin", *reversed(WORDS)]
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(1)
    BertModel(config).save_pretrained(folder / "hf")
    tokenizer.save_pretrained(folder / "hf")
    transformer = models.Transformer(str(folder / "hf"), max_seq_length=32)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    guide = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    guide.save(str(folder / "st"))
    return SentenceTransformer(str(folder / "st"), device="cpu")


def test_guide_with_another_vocabulary_retokenizes_the_texts(model, tmp_path):
    other = build_other_vocab_model(tmp_path / "other")
    assert model.tokenizer.get_vocab() != other.tokenizer.get_vocab()
    guide = GuideModel(model, other, margin=0.1)
    assert guide.must_retokenize
    texts = [QUERIES, POSITIVES, NEGATIVES]
    features = [model.preprocess(column) for column in texts]

    embedded = guide.embed(features)

    assert [tuple(column.shape) for column in embedded] == [(4, 16)] * 3  # one guide embedding per row
    for column, column_texts in zip(embedded, texts, strict=True):
        torch.testing.assert_close(column, other.encode(column_texts, convert_to_tensor=True), atol=1e-5, rtol=0)
    with torch.no_grad():  # the model's token ids read with the guide's vocabulary would be other texts
        misread = other(dict(features[0]))["sentence_embedding"]
    assert not torch.allclose(misread, embedded[0], atol=1e-3)
    # And the loss runs with it: the guide's 16-d embeddings mask, the model's 32-d embeddings train.
    loss_fn = InfoNCELoss(model, scale=20.0, symmetric=True, guide=GuideModel(model, other, margin=0.1))
    with torch.no_grad():
        loss = loss_fn([model.preprocess(column) for column in texts], None)
    assert torch.isfinite(loss)
    assert "masked_by_guide" in loss_fn.components.pop_means()


@pytest.mark.parametrize("seed", range(5))
def test_the_table_mask_equals_plain_set_intersections_on_random_tables(seed):
    generator = random.Random(seed)
    keys = range(12)
    candidate_keys = [
        tuple(frozenset(generator.sample(keys, generator.randint(1, 2))) for _ in range(generator.randint(1, 3)))
        for _ in range(20)
    ]
    relevant_keys = [frozenset(generator.sample(keys, generator.randint(0, 4))) for _ in range(20)]
    table = FalseNegativeTable(candidate_keys, relevant_keys)
    rows = generator.sample(range(20), 6)
    for num_columns in (1, 3, 4):
        mask = table.query_to_candidates_mask(torch.tensor(rows, dtype=torch.float32), num_columns)
        assert torch.equal(mask.cpu(), reference_mask(table, rows, num_columns)), num_columns
