"""InfoNCELoss against a loop-by-loop reference computed from the definition, and against sentence-transformers."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from embedtune.losses.info_nce import InfoNCELoss, hard_negative_log_weights

ATOL = 1e-5


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_model_dir), device="cpu")


def with_rows(weights: torch.Tensor | None) -> torch.Tensor | None:
    """Labels as the trainer passes them: ``[row index, weights...]`` (row indices are unused without a table)."""
    if weights is None:
        return None
    return torch.cat([torch.arange(weights.shape[0], dtype=weights.dtype).unsqueeze(1), weights], dim=1)


def random_columns(batch: int, num_negatives: int, dim: int = 8, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    columns = []
    for _ in range(2 + num_negatives):
        column = torch.randn(batch, dim, generator=generator)
        columns.append(column / column.norm(dim=1, keepdim=True))
    return columns


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = a.tolist(), b.tolist()
    dot = sum(u * v for u, v in zip(x, y, strict=True))
    return dot / (math.sqrt(sum(u * u for u in x)) * math.sqrt(sum(v * v for v in y)))


def reference_loss(columns: list[torch.Tensor], weights: list[list[float]] | None, scale: float) -> float:
    """The definition, one query at a time: own weights on own negatives, 1 on the rest, 0 drops a column."""
    queries, positives, negatives = columns[0], columns[1], columns[2:]
    batch = queries.shape[0]
    total = 0.0
    for i in range(batch):
        numerator = math.exp(scale * cosine(queries[i], positives[i]))
        denominator = sum(math.exp(scale * cosine(queries[i], positives[j])) for j in range(batch))
        for k, negative_column in enumerate(negatives):
            for m in range(batch):
                weight = 1.0 if weights is None else weights[m][k]
                if weight == 0:  # padding slot: gone for every query
                    continue
                if m != i:
                    weight = 1.0
                denominator += weight * math.exp(scale * cosine(queries[i], negative_column[m]))
        total += -math.log(numerator / denominator)
    return total / batch


def reference_passage_to_query(columns: list[torch.Tensor], scale: float) -> float:
    queries, positives = columns[0], columns[1]
    batch = queries.shape[0]
    total = 0.0
    for i in range(batch):
        logits = [scale * cosine(positives[i], queries[j]) for j in range(batch)]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    return total / batch


def random_weights(batch: int, num_negatives: int, seed: int) -> list[list[float]]:
    generator = torch.Generator().manual_seed(seed)
    return (0.25 + 3 * torch.rand(batch, num_negatives, generator=generator)).tolist()


@pytest.mark.parametrize("scale", [1.0, 20.0])
@pytest.mark.parametrize("batch", [3, 4])
@pytest.mark.parametrize("num_negatives", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_matches_definition(scale, batch, num_negatives, weighted):
    columns = random_columns(batch, num_negatives, seed=batch * 10 + num_negatives)
    loss_fn = InfoNCELoss(model=None, scale=scale)
    weights = random_weights(batch, num_negatives, seed=7) if weighted else None
    if weighted and num_negatives == 2:
        weights[1][1] = 0.0  # one padding slot
    tensor_weights = None if weights is None else torch.tensor(weights).reshape(batch, num_negatives)
    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(tensor_weights))
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(reference_loss(columns, weights, scale), abs=ATOL)


def test_hard_negative_log_weights_offsets_are_log_of_weight():
    weights = torch.tensor([[2.0, 0.5], [1.0, 0.0], [3.0, 1.5]])
    offsets = hard_negative_log_weights(weights)
    batch, num_negatives = weights.shape
    assert offsets.shape == (batch, (1 + num_negatives) * batch)
    for i in range(batch):
        for column in range(offsets.shape[1]):
            block, owner = divmod(column, batch)
            if block >= 1 and weights[owner, block - 1] == 0:
                expected = float("-inf")
            elif block >= 1 and owner == i:
                expected = math.log(weights[i, block - 1].item())
            else:
                expected = 0.0
            assert offsets[i, column].item() == pytest.approx(expected, abs=1e-6), (i, column)


@pytest.mark.parametrize("weight", [2, 3])
def test_integer_weight_equals_duplicating_the_negative(weight):
    # Batch of one: the only query sees its negative `weight` times when the column is repeated.
    query, positive, negative = random_columns(1, 1, seed=3)
    loss_fn = InfoNCELoss(model=None, scale=20.0)
    weighted = loss_fn.compute_loss_from_embeddings(
        [query, positive, negative], with_rows(torch.tensor([[float(weight)]]))
    )
    duplicated = loss_fn.compute_loss_from_embeddings([query, positive] + [negative] * weight)
    assert weighted.item() == pytest.approx(duplicated.item(), abs=ATOL)


def test_weight_multiplies_exp_of_similarity_not_similarity():
    # A negative with negative cosine: scaling the similarity by 2 would lower the loss, scaling exp(sim) raises it.
    query = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[0.6, 0.8]])
    negative = torch.tensor([[-0.6, 0.8]])  # cosine -0.6 with the query
    loss_fn = InfoNCELoss(model=None, scale=5.0)
    base = loss_fn.compute_loss_from_embeddings([query, positive, negative], with_rows(torch.tensor([[1.0]])))
    doubled = loss_fn.compute_loss_from_embeddings([query, positive, negative], with_rows(torch.tensor([[2.0]])))
    assert doubled.item() > base.item()
    s_pos, s_neg = 5.0 * 0.6, 5.0 * -0.6
    expected = -math.log(math.exp(s_pos) / (math.exp(s_pos) + 2 * math.exp(s_neg)))
    assert doubled.item() == pytest.approx(expected, abs=ATOL)


def test_zero_weight_removes_the_column_for_every_query():
    batch = 4
    columns = random_columns(batch, 2, seed=5)
    loss_fn = InfoNCELoss(model=None, scale=20.0)
    weights = torch.ones(batch, 2)
    weights[2, 0] = 0.0
    loss = loss_fn.compute_loss_from_embeddings(columns, with_rows(weights))
    # Whatever the padded row holds (here: a copy of each query's positive, the worst case) changes nothing.
    changed = [c.clone() for c in columns]
    changed[2][2] = columns[0][2]
    assert loss_fn.compute_loss_from_embeddings(changed, with_rows(weights)).item() == pytest.approx(
        loss.item(), abs=ATOL
    )
    assert loss.item() == pytest.approx(reference_loss(columns, weights.tolist(), 20.0), abs=ATOL)
    # Removing the padded negative from the candidate set by hand gives the same figure.
    without = 0.0
    for i in range(batch):
        candidates = [columns[1][j] for j in range(batch)]
        candidates += [columns[2][m] for m in range(batch) if m != 2] + [columns[3][m] for m in range(batch)]
        logits = [20.0 * cosine(columns[0][i], c) for c in candidates]
        without += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    assert loss.item() == pytest.approx(without / batch, abs=ATOL)


def test_fully_padded_column_equals_dropping_the_column():
    batch = 3
    columns = random_columns(batch, 2, seed=11)
    loss_fn = InfoNCELoss(model=None, scale=20.0)
    weights = torch.tensor([[1.5, 0.0], [0.5, 0.0], [2.0, 0.0]])
    padded = loss_fn.compute_loss_from_embeddings(columns, with_rows(weights))
    dropped = loss_fn.compute_loss_from_embeddings(columns[:3], with_rows(weights[:, :1]))
    assert padded.item() == pytest.approx(dropped.item(), abs=ATOL)
    all_padded = loss_fn.compute_loss_from_embeddings(columns, with_rows(torch.zeros(batch, 2)))
    pairs_only = loss_fn.compute_loss_from_embeddings(columns[:2])
    assert all_padded.item() == pytest.approx(pairs_only.item(), abs=ATOL)


def test_padded_negative_gets_no_gradient():
    columns = [c.clone().requires_grad_(True) for c in random_columns(3, 1, seed=2)]
    weights = torch.tensor([[1.0], [0.0], [2.0]])
    InfoNCELoss(model=None, scale=20.0).compute_loss_from_embeddings(columns, with_rows(weights)).backward()
    negative_grad = columns[2].grad
    assert torch.all(negative_grad[1] == 0)
    assert negative_grad[0].abs().sum() > 0 and negative_grad[2].abs().sum() > 0


@pytest.mark.parametrize("num_negatives", [0, 1, 2])
def test_unit_weights_equal_unweighted_and_sentence_transformers(model, num_negatives):
    batch, scale = 4, 20.0
    columns = random_columns(batch, num_negatives, seed=21 + num_negatives)
    ours = InfoNCELoss(model, scale=scale)
    unweighted = ours.compute_loss_from_embeddings(columns, None)
    unit = ours.compute_loss_from_embeddings(columns, with_rows(torch.ones(batch, num_negatives)))
    theirs = MultipleNegativesRankingLoss(model, scale=scale).compute_loss_from_embeddings(columns, None)
    assert unit.item() == pytest.approx(unweighted.item(), abs=ATOL)
    assert unweighted.item() == pytest.approx(theirs.item(), abs=ATOL)
    assert unweighted.item() == pytest.approx(reference_loss(columns, None, scale), abs=ATOL)


@pytest.mark.parametrize("num_negatives", [0, 2])
def test_symmetric_is_mean_of_both_directions(model, num_negatives):
    batch, scale = 4, 20.0
    columns = random_columns(batch, num_negatives, seed=31 + num_negatives)
    weights = torch.tensor(random_weights(batch, num_negatives, seed=3)).reshape(batch, num_negatives)
    loss = InfoNCELoss(model, scale=scale, symmetric=True).compute_loss_from_embeddings(columns, with_rows(weights))
    forward = reference_loss(columns, weights.tolist(), scale)
    backward = reference_passage_to_query(columns, scale)
    assert loss.item() == pytest.approx((forward + backward) / 2, abs=ATOL)
    # sentence-transformers' Jina-style symmetric loss: per-direction softmax, averaged (unweighted negatives).
    st_loss = MultipleNegativesRankingLoss(
        model, scale=scale, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
    )
    ours_unweighted = InfoNCELoss(model, scale=scale, symmetric=True).compute_loss_from_embeddings(columns)
    theirs = st_loss.compute_loss_from_embeddings(columns, None)
    assert ours_unweighted.item() == pytest.approx(theirs.item(), abs=ATOL)


def test_symmetric_differs_from_one_direction():
    columns = random_columns(4, 0, seed=41)
    one_way = InfoNCELoss(model=None, scale=20.0).compute_loss_from_embeddings(columns)
    two_way = InfoNCELoss(model=None, scale=20.0, symmetric=True).compute_loss_from_embeddings(columns)
    assert two_way.item() != pytest.approx(one_way.item(), abs=1e-4)


def test_scale_and_temperature():
    assert InfoNCELoss(model=None, scale=20.0).temperature == pytest.approx(1 / 20.0)
    assert InfoNCELoss(model=None, scale=0.5).temperature == pytest.approx(2.0)
    assert InfoNCELoss(model=None, scale=20.0, symmetric=True).get_config_dict() == {
        "scale": 20.0,
        "symmetric": True,
        "similarity_fct": "cos_sim",
        "mask_false_negatives": False,
        "guide": False,
        "isotropy_weight": 0.0,
    }


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_non_positive_scale_is_rejected(scale):
    with pytest.raises(ValueError, match="scale"):
        InfoNCELoss(model=None, scale=scale)


@pytest.mark.parametrize("shape", [(3, 2), (4, 3), (4, 1), (3, 1), (4, 2, 1)])
def test_label_shape_mismatch_is_rejected(shape):
    columns = random_columns(4, 1)  # labels must be (4, 2): [row index, one weight]
    with pytest.raises(ValueError, match="labels have shape"):
        InfoNCELoss(model=None).compute_loss_from_embeddings(columns, torch.ones(shape))


def test_single_column_is_rejected():
    with pytest.raises(ValueError):
        InfoNCELoss(model=None).compute_loss_from_embeddings(random_columns(3, 0)[:1])


def test_forward_backpropagates_into_the_model(model):
    texts = [
        ["what color is the apple", "what color is the banana", "which car is fast"],
        ["the apple is red fruit", "the banana is yellow fruit", "the car is fast on the road"],
        ["the lemon is sour", "the bus is slow", "the plum grows on a tree"],
        ["the river is blue", "the train is fast", "the mountain"],
    ]
    features = [model.tokenize(column) for column in texts]
    labels = torch.tensor([[2.0, 1.0], [1.0, 0.0], [0.5, 1.5]])
    loss_fn = InfoNCELoss(model, scale=20.0, symmetric=True)
    model.train()
    model.zero_grad()
    try:
        loss = loss_fn(features, with_rows(labels))
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
    finally:
        model.eval()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is None or torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    model.zero_grad()


def test_forward_equals_loss_on_model_embeddings(model):
    texts = [["apple", "banana", "car"], ["red apple fruit", "yellow banana", "fast car"], ["sea", "lake", "bus"]]
    features = [model.tokenize(column) for column in texts]
    labels = torch.tensor([[1.0], [0.0], [3.0]])
    loss_fn = InfoNCELoss(model, scale=20.0)
    model.eval()
    with torch.no_grad():
        loss = loss_fn(features, with_rows(labels))
        embeddings = [model.encode(column, convert_to_tensor=True) for column in texts]
    expected = reference_loss(embeddings, labels.tolist(), 20.0)
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    # A 1-D labels tensor (the trainer's dummy labels) means "no weights".
    with torch.no_grad():
        unlabelled = loss_fn(features, torch.zeros(3))
    assert unlabelled.item() == pytest.approx(reference_loss(embeddings, None, 20.0), abs=1e-4)
