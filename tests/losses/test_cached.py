"""CachedInfoNCELoss (GradCache) against InfoNCELoss on the tiny model: the same loss, the same parameter gradients."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from torch import nn

from embedtune.data.types import TrainingExample
from embedtune.losses.cached_info_nce import CachedInfoNCELoss
from embedtune.losses.guide import GuideModel
from embedtune.losses.info_nce import InfoNCELoss
from embedtune.training.dataset import build_train_dataset

ATOL = 1e-5

# Five rows (the first record has two positives, i.e. two rows of one query), weighted and padded hard negatives, and
# false negatives for the table to find: the last record is the first query respelled (its positives are relevant to
# rows 0 and 1 and theirs to it), row 2's positive is row 0's first negative, and row 3's second negative is row 0's
# positive, relevant to the first query.
EXAMPLES = [
    TrainingExample(
        "what color is the apple",
        ("the apple is red fruit", "the red apple grows on a tree"),
        ("the car is fast", "the pear is green"),
        (2.0, 0.5),
    ),
    TrainingExample("which car is fast", ("the car is fast",), ("the bus is slow",), (3.0,)),
    TrainingExample("what is the sea", ("the sea is blue",), ("the lake is blue", "the apple is red fruit"), (1.5, 1)),
    TrainingExample("What color is  the apple", ("the green apple is sour",), ("the lemon is sour",), (0.7,)),
]
BUILT = build_train_dataset(EXAMPLES, max_hard_negatives=2)
COLUMNS = [name for name in BUILT.dataset.column_names if name != "label"]
TEXTS = [BUILT.dataset[name] for name in COLUMNS]
LABELS = torch.tensor(BUILT.dataset["label"])
DIMS = [32, 16, 8]


def settings(**extra) -> dict:
    return {"scale": 20.0, "symmetric": True, "false_negatives": BUILT.false_negatives, "isotropy_weight": 0.3} | extra


@pytest.fixture()
def model(tiny_model_dir) -> SentenceTransformer:
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.train()
    return model


def without_dropout(model: SentenceTransformer) -> SentenceTransformer:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def features(model: SentenceTransformer) -> list[dict]:
    return [model.preprocess(column) for column in TEXTS]


def loss_and_gradients(model: SentenceTransformer, loss_fn: nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = loss_fn(features(model), LABELS)
    loss.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return loss.item(), gradients


def assert_same_gradients(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=ATOL, rtol=ATOL, msg=name)
    assert sum(float(g.abs().sum()) for g in ours.values()) > 0


def test_the_batch_has_what_the_comparison_needs():
    assert BUILT.num_negatives == 2 and len(LABELS) == 5
    weights = set(LABELS[:, 1:].flatten().tolist())
    assert 0.0 in weights and weights - {0.0, 1.0}  # padding slots and weights other than 1
    mask = BUILT.false_negatives.query_to_candidates_mask(LABELS[:, 0], 3)
    assert mask.sum() > 0


@pytest.mark.parametrize("mini_batch_size", [2, 3])
@pytest.mark.parametrize("guided", [False, True])
def test_cached_equals_uncached_without_dropout(model, mini_batch_size, guided):
    without_dropout(model)
    guide = {"guide": GuideModel(model, margin=0.05)} if guided else {}
    cached_guide = {"guide": GuideModel(model, margin=0.05)} if guided else {}
    plain = InfoNCELoss(model, **settings(**guide))
    cached = CachedInfoNCELoss(model, mini_batch_size=mini_batch_size, **settings(**cached_guide))

    plain_loss, plain_gradients = loss_and_gradients(model, plain)
    cached_loss, cached_gradients = loss_and_gradients(model, cached)

    assert cached_loss == pytest.approx(plain_loss, abs=ATOL)
    assert_same_gradients(cached_gradients, plain_gradients)
    plain_parts, cached_parts = plain.components.pop_means(), cached.components.pop_means()
    assert cached_parts.keys() == plain_parts.keys()
    for name, value in plain_parts.items():
        assert cached_parts[name] == pytest.approx(value, abs=ATOL), name
    assert plain_parts["masked_candidates"] > 0
    if guided:
        assert plain_parts["masked_by_guide"] > 0


def test_cached_replays_dropout(model):
    # With dropout on, the cached loss must back-propagate through the very masks its first pass drew: the loss and
    # gradients equal those of embedding the same mini-batches, in the same order and from the same seed, with a graph.
    mini_batch_size = 2
    cached = CachedInfoNCELoss(model, mini_batch_size=mini_batch_size, **settings())
    torch.manual_seed(7)
    cached_loss, cached_gradients = loss_and_gradients(model, cached)

    torch.manual_seed(7)
    embeddings = []
    for column in TEXTS:
        parts = [
            model(model.preprocess(column[begin : begin + mini_batch_size]))["sentence_embedding"]
            for begin in range(0, len(column), mini_batch_size)
        ]
        embeddings.append(torch.cat(parts))
    reference = InfoNCELoss(model, **settings()).compute_loss_from_embeddings(embeddings, LABELS)
    reference.backward()
    reference_gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    assert cached_loss == pytest.approx(reference.item(), abs=ATOL)
    assert_same_gradients(cached_gradients, reference_gradients)
    without_dropout(model)  # dropout did change the figure, so the replay was needed
    assert abs(loss_and_gradients(model, InfoNCELoss(model, **settings()))[0] - cached_loss) > 1e-4


@pytest.mark.parametrize("mini_batch_size", [2, 3])
@pytest.mark.parametrize("guided", [False, True])
def test_matryoshka_of_cached_equals_matryoshka_of_uncached(model, mini_batch_size, guided):
    without_dropout(model)
    guide = {"guide": GuideModel(model, margin=0.05)} if guided else {}
    cached_guide = {"guide": GuideModel(model, margin=0.05)} if guided else {}
    plain = MatryoshkaLoss(model, InfoNCELoss(model, **settings(**guide)), DIMS)
    cached = MatryoshkaLoss(
        model, CachedInfoNCELoss(model, mini_batch_size=mini_batch_size, **settings(**cached_guide)), DIMS
    )

    plain_loss, plain_gradients = loss_and_gradients(model, plain)
    cached_loss, cached_gradients = loss_and_gradients(model, cached)

    assert cached_loss == pytest.approx(plain_loss, abs=ATOL)
    assert_same_gradients(cached_gradients, plain_gradients)


def test_cached_without_gradients_returns_the_plain_loss(model):
    without_dropout(model)
    model.eval()
    with torch.no_grad():
        plain = InfoNCELoss(model, **settings())(features(model), LABELS)
        cached = CachedInfoNCELoss(model, mini_batch_size=2, **settings())(features(model), LABELS)
    assert cached.item() == pytest.approx(plain.item(), abs=ATOL)


def test_cached_settings_are_checked_and_recorded(model):
    with pytest.raises(ValueError, match="mini_batch_size"):
        CachedInfoNCELoss(model, mini_batch_size=0)
    config = CachedInfoNCELoss(model, mini_batch_size=3, **settings()).get_config_dict()
    assert config["mini_batch_size"] == 3 and config["mask_false_negatives"] is True
    assert config["isotropy_weight"] == 0.3 and config["symmetric"] is True
