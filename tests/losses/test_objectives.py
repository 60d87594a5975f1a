"""The objectives' parts (symmetric term, weights, isotropy, Matryoshka), build_loss and the loss settings' checks."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses as st_losses
from torch import nn

from embedtune.config import ConfigError, LossConfig, build_config
from embedtune.losses import LossContext, build_loss, builder_of, matryoshka_dims
from embedtune.losses.cached_info_nce import CachedInfoNCELoss
from embedtune.losses.guide import GuideModel
from embedtune.losses.info_nce import InfoNCELoss
from embedtune.losses.isotropy import alignment, mean_dimension_std, uniformity
from embedtune.losses.registry import OBJECTIVES
from tests.losses.references import (
    hand_table,
    passage_to_query_loss,
    query_to_candidates_loss,
    random_columns,
    with_rows,
)

ATOL = 1e-5

# Rows 0 and 2 are two records of one query: each one's positive is a false negative of the other.
TABLE_ROWS = [(["P0", "N0"], {"P0", "P2"}), (["P1", "N1"], {"P1"}), (["P2", "N2"], {"P0", "P2"})]
TABLE_MASKED = {(0, 0, 2), (2, 0, 0)}
TABLE_PASSAGE_MASKED = {(2, 0), (0, 2)}

QUERIES = ["what color is the apple", "which car is fast", "what is the sea", "the plum grows on a tree"]
POSITIVES = ["the apple is red fruit", "the car is fast on the road", "the sea is blue", "the plum tree"]
NEGATIVES = ["the bus is slow", "the pear is green", "the lake", "the mountain and the forest"]
TEXTS = [QUERIES, POSITIVES, NEGATIVES]


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_model_dir), device="cpu")


@pytest.fixture()
def trainable(tiny_model_dir) -> SentenceTransformer:
    """A fresh tiny model in train mode without dropout, so two forward passes give the same embeddings."""
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    model.train()
    return model


# ------------------------------------------------------------------------------------------- symmetric term


@pytest.mark.parametrize("masked", [False, True])
def test_symmetric_loss_is_the_mean_of_the_two_directions(masked):
    columns = random_columns(3, 1, seed=1)
    weights = torch.tensor([[2.5], [0.5], [1.25]])
    table = hand_table(TABLE_ROWS) if masked else None
    symmetric = InfoNCELoss(model=None, scale=20.0, symmetric=True, false_negatives=table)
    one_way = InfoNCELoss(model=None, scale=20.0, symmetric=False, false_negatives=table)

    loss = symmetric.compute_loss_from_embeddings(columns, with_rows(weights))

    parts = symmetric.components.pop_means()
    forward = query_to_candidates_loss(columns, weights.tolist(), 20.0, TABLE_MASKED if masked else ())
    backward = passage_to_query_loss(columns, 20.0, TABLE_PASSAGE_MASKED if masked else ())
    assert parts["infonce_query_to_doc"] == pytest.approx(forward, abs=ATOL)
    assert parts["infonce_doc_to_query"] == pytest.approx(backward, abs=ATOL)
    assert loss.item() == pytest.approx((forward + backward) / 2, abs=ATOL)
    assert one_way.compute_loss_from_embeddings(columns, with_rows(weights)).item() == pytest.approx(forward, abs=ATOL)
    assert "infonce_doc_to_query" not in one_way.components.pop_means()
    assert abs(forward - backward) > 10 * ATOL  # the two directions differ, so the mean is a real check


# ------------------------------------------------------------------------------------------------ weights


@pytest.mark.parametrize("weight", [2, 3])
def test_integer_weight_equals_duplicating_the_negative_when_symmetric_and_masked(weight):
    # Weight w on row 1's negative. Duplicating its column w - 1 times shows it w times to *every* query, so the
    # copies are masked for the other queries (key COPY) and the other rows' copies for everyone (key DUP).
    owner = 1
    columns = random_columns(3, 1, seed=2)
    weights = torch.ones(3, 1)
    weights[owner, 0] = float(weight)
    weighted = InfoNCELoss(model=None, scale=20.0, symmetric=True, false_negatives=hand_table(TABLE_ROWS))
    weighted_loss = weighted.compute_loss_from_embeddings(columns, with_rows(weights))

    copies = weight - 1
    duplicated_rows = []
    for row, (candidates, relevant) in enumerate(TABLE_ROWS):
        copy_key = "COPY" if row == owner else "DUP"
        extra = {"DUP"} | ({"COPY"} if row != owner else set())
        duplicated_rows.append(([*candidates, *[copy_key] * copies], relevant | extra))
    duplicated = InfoNCELoss(model=None, scale=20.0, symmetric=True, false_negatives=hand_table(duplicated_rows))
    duplicated_loss = duplicated.compute_loss_from_embeddings(
        [*columns, *[columns[2]] * copies], with_rows(torch.ones(3, 1 + copies))
    )

    assert weighted_loss.item() == pytest.approx(duplicated_loss.item(), abs=ATOL)
    forward = query_to_candidates_loss(columns, weights.tolist(), 20.0, TABLE_MASKED)
    backward = passage_to_query_loss(columns, 20.0, TABLE_PASSAGE_MASKED)
    assert weighted_loss.item() == pytest.approx((forward + backward) / 2, abs=ATOL)
    unweighted = InfoNCELoss(model=None, scale=20.0, symmetric=True, false_negatives=hand_table(TABLE_ROWS))
    unit_loss = unweighted.compute_loss_from_embeddings(columns, with_rows(torch.ones(3, 1))).item()
    assert abs(unit_loss - weighted_loss.item()) > 10 * ATOL


# ------------------------------------------------------------------------------------------------ isotropy


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def direct_uniformity(embeddings: torch.Tensor, t: float = 2.0) -> float:
    """``log`` of the mean over pairs i < j of ``exp(-t ||x_i - x_j||^2)``, x L2-normalised (Wang & Isola)."""
    points = [unit(row) for row in embeddings.tolist()]
    potentials = [
        math.exp(-t * sum((a - b) ** 2 for a, b in zip(points[i], points[j], strict=True)))
        for i in range(len(points))
        for j in range(i + 1, len(points))
    ]
    return math.log(sum(potentials) / len(potentials))


def direct_alignment(queries: torch.Tensor, positives: torch.Tensor) -> float:
    """Mean over pairs of ``||x - y||^2``, both L2-normalised."""
    pairs = zip(queries.tolist(), positives.tolist(), strict=True)
    distances = [sum((a - b) ** 2 for a, b in zip(unit(x), unit(y), strict=True)) for x, y in pairs]
    return sum(distances) / len(distances)


def direct_mean_dimension_std(embeddings: torch.Tensor) -> float:
    """Mean over dimensions of the (sample) standard deviation of the L2-normalised embeddings' coordinate."""
    points = [unit(row) for row in embeddings.tolist()]
    return statistics.fmean(statistics.stdev(column) for column in zip(*points, strict=True))


def torch_uniformity(embeddings: torch.Tensor) -> torch.Tensor:
    """The same uniformity, pair by pair in torch ops (for gradients)."""
    points = embeddings / embeddings.norm(dim=1, keepdim=True)
    pairs = [
        torch.exp(-2 * (points[i] - points[j]).pow(2).sum())
        for i in range(len(points))
        for j in range(i + 1, len(points))
    ]
    return torch.stack(pairs).mean().log()


def raw_columns(batch: int, seed: int) -> list[torch.Tensor]:
    """Unnormalised embeddings of varied length (the measures must normalise them)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 6, generator=generator) * (1 + 4 * torch.rand(batch, 1, generator=generator))]


@pytest.mark.parametrize("batch", [2, 3, 7])
def test_isotropy_measures_match_their_formulas(batch):
    [queries] = raw_columns(batch, seed=batch)
    [positives] = raw_columns(batch, seed=batch + 100)
    assert uniformity(queries).item() == pytest.approx(direct_uniformity(queries), abs=ATOL)
    assert uniformity(queries, t=0.5).item() == pytest.approx(direct_uniformity(queries, t=0.5), abs=ATOL)
    assert alignment(queries, positives).item() == pytest.approx(direct_alignment(queries, positives), abs=ATOL)
    assert mean_dimension_std(queries).item() == pytest.approx(direct_mean_dimension_std(queries), abs=ATOL)


def test_isotropy_measures_at_their_extremes():
    same = torch.tensor([[3.0, 4.0]] * 4)
    assert uniformity(same).item() == pytest.approx(0.0, abs=ATOL)  # collapsed: every potential is exp(0)
    assert mean_dimension_std(same).item() == pytest.approx(0.0, abs=ATOL)
    assert alignment(same, 2 * same).item() == pytest.approx(0.0, abs=ATOL)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(opposite).item() == pytest.approx(-8.0, abs=ATOL)  # -t * ||x - y||^2 = -2 * 4
    with pytest.raises(ValueError):
        uniformity(torch.ones(1, 3))


@pytest.mark.parametrize("weight", [0.1, 1.0])
@pytest.mark.parametrize("symmetric", [False, True])
def test_isotropy_weight_adds_the_weighted_mean_uniformity(weight, symmetric):
    base = random_columns(3, 1, seed=3)
    labels = with_rows(torch.tensor([[2.0], [0.5], [1.0]]))
    table = hand_table(TABLE_ROWS)
    with_term = [c.clone().requires_grad_(True) for c in base]
    without_term = [c.clone().requires_grad_(True) for c in base]
    direct = [c.clone().requires_grad_(True) for c in base]
    regularised = InfoNCELoss(model=None, symmetric=symmetric, false_negatives=table, isotropy_weight=weight)
    plain = InfoNCELoss(model=None, symmetric=symmetric, false_negatives=table, isotropy_weight=0.0)

    loss = regularised.compute_loss_from_embeddings(with_term, labels)
    plain_loss = plain.compute_loss_from_embeddings(without_term, labels)
    term = weight * (torch_uniformity(direct[0]) + torch_uniformity(direct[1])) / 2

    expected = plain_loss.item() + weight * (direct_uniformity(base[0]) + direct_uniformity(base[1])) / 2
    assert loss.item() == pytest.approx(expected, abs=ATOL)
    assert term.item() == pytest.approx(expected - plain_loss.item(), abs=ATOL)
    loss.backward()
    plain_loss.backward()
    term.backward()
    for ours, theirs, extra in zip(with_term, without_term, direct, strict=True):
        expected_grad = theirs.grad + (extra.grad if extra.grad is not None else 0)
        torch.testing.assert_close(ours.grad, expected_grad, atol=ATOL, rtol=0)


def test_isotropy_is_logged_even_when_its_weight_is_zero():
    columns = random_columns(4, 1, seed=4)
    loss_fn = InfoNCELoss(model=None)
    loss_fn.compute_loss_from_embeddings(columns)
    parts = loss_fn.components.pop_means()
    assert parts["uniformity"] == pytest.approx(
        (direct_uniformity(columns[0]) + direct_uniformity(columns[1])) / 2, abs=ATOL
    )
    assert parts["alignment"] == pytest.approx(direct_alignment(columns[0], columns[1]), abs=ATOL)
    stacked = torch.cat([columns[0], columns[1]])
    assert parts["embedding_std"] == pytest.approx(direct_mean_dimension_std(stacked), abs=ATOL)
    assert loss_fn.components.pop_means() == {}  # popped means start over


def test_isotropy_needs_two_rows_and_a_non_negative_weight():
    columns = random_columns(1, 1, seed=5)
    with_weight = InfoNCELoss(model=None, isotropy_weight=0.5).compute_loss_from_embeddings(columns)
    assert with_weight.item() == pytest.approx(InfoNCELoss(model=None).compute_loss_from_embeddings(columns).item())
    with pytest.raises(ValueError, match="isotropy_weight"):
        InfoNCELoss(model=None, isotropy_weight=-0.1)


# ------------------------------------------------------------------------------------------------ Matryoshka


def gradients(model: SentenceTransformer) -> dict[str, torch.Tensor]:
    found = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return found


def infonce(model: SentenceTransformer) -> InfoNCELoss:
    return InfoNCELoss(model, scale=20.0, symmetric=True, isotropy_weight=0.2, guide=GuideModel(model, margin=0.02))


LABELS = with_rows(torch.tensor([[2.0], [0.5], [1.0], [0.0]]))


def test_matryoshka_at_the_full_dimension_alone_is_the_wrapped_loss(trainable):
    full = trainable.get_embedding_dimension()
    wrapped = st_losses.MatryoshkaLoss(trainable, infonce(trainable), [full])
    trainable.zero_grad()
    loss = infonce(trainable)([trainable.preprocess(column) for column in TEXTS], LABELS)
    loss.backward()
    expected = gradients(trainable)
    matryoshka = wrapped([trainable.preprocess(column) for column in TEXTS], LABELS)
    matryoshka.backward()
    ours = gradients(trainable)
    assert matryoshka.item() == pytest.approx(loss.item(), abs=ATOL)
    assert ours.keys() == expected.keys() and ours
    for name in ours:
        torch.testing.assert_close(ours[name], expected[name], atol=ATOL, rtol=ATOL, msg=name)


def test_matryoshka_sums_the_loss_over_the_truncated_embeddings(trainable):
    dims = [32, 16, 8]
    loss_fn = infonce(trainable)
    wrapped = st_losses.MatryoshkaLoss(trainable, loss_fn, dims)
    features = [trainable.preprocess(column) for column in TEXTS]
    with torch.no_grad():
        total = wrapped(features, LABELS)
        embeddings = [trainable(trainable.preprocess(column))["sentence_embedding"] for column in TEXTS]
        guide_embeddings = loss_fn.guide.embed(features)
        per_dim = [
            loss_fn.compute_loss_from_embeddings([e[:, :dim] for e in embeddings], LABELS, guide_embeddings).item()
            for dim in dims
        ]
    assert total.item() == pytest.approx(sum(per_dim), abs=ATOL)
    assert len(set(round(value, 4) for value in per_dim)) == len(dims)  # each dimension counts differently


@pytest.mark.parametrize(
    ("requested", "model_dim", "expected"),
    [
        ([768, 512, 256, 128, 64], 384, [384, 256, 128, 64]),
        ([768, 512, 256, 128, 64], 768, [768, 512, 256, 128, 64]),
        ([64, 128, 64], 256, [256, 128, 64]),  # the model's dimension is added; duplicates go; largest first
        ([8, 16], 32, [32, 16, 8]),
        ([768, 512], 32, [32]),
        ([64, 32, 128], None, [128, 64, 32]),
    ],
)
def test_matryoshka_dims(requested, model_dim, expected):
    assert matryoshka_dims(requested, model_dim) == expected


# ------------------------------------------------------------------------------------------------ build_loss


def test_build_loss_knows_every_configurable_name():
    assert all(callable(builder_of(name)) for name in OBJECTIVES)


def test_build_infonce_passes_every_setting(model):
    table = hand_table(TABLE_ROWS)
    config = LossConfig(
        name="infonce",
        scale=25.0,
        symmetric=True,
        isotropy_weight=0.2,
        guide=True,
        guide_margin=0.1,
        guide_margin_strategy="relative",
    )
    loss = build_loss(model, config, LossContext(false_negatives=table))
    assert type(loss) is InfoNCELoss
    assert (loss.scale, loss.symmetric, loss.isotropy_weight) == (25.0, True, 0.2)
    assert loss.false_negatives is table
    assert isinstance(loss.guide, GuideModel) and (loss.guide.margin, loss.guide.strategy) == (0.1, "relative")
    assert loss.guide.guide is not model and not loss.guide.must_retokenize  # a frozen copy of the base model


def test_build_infonce_uses_the_given_guide_and_leaves_off_what_is_off(model, tiny_model_dir):
    other = SentenceTransformer(str(tiny_model_dir), device="cpu")
    table = hand_table(TABLE_ROWS)
    guided = build_loss(model, LossConfig(guide=True), LossContext(false_negatives=table, guide=other))
    assert guided.guide.guide is other
    off = build_loss(model, LossConfig(mask_false_negatives=False, guide=False), LossContext(table, other))
    assert off.false_negatives is None and off.guide is None


def test_build_infonce_with_mini_batches_is_cached(model):
    config = LossConfig(name="infonce", mini_batch_size=4, scale=30.0, symmetric=False, isotropy_weight=0.5)
    table = hand_table(TABLE_ROWS)
    loss = build_loss(model, config, LossContext(false_negatives=table))
    assert type(loss) is CachedInfoNCELoss
    assert (loss.mini_batch_size, loss.scale, loss.symmetric, loss.isotropy_weight) == (4, 30.0, False, 0.5)
    assert loss.false_negatives is table and loss.guide is None


@pytest.mark.parametrize("hardness_mode", [None, "in_batch_negatives", "hard_negatives", "all_negatives"])
@pytest.mark.parametrize("mini_batch_size", [None, 2])
def test_build_mnrl_passes_directions_and_hardness(model, hardness_mode, mini_batch_size):
    config = LossConfig(
        name="mnrl",
        scale=15.0,
        directions=["query_to_doc", "doc_to_query"],
        hardness_mode=hardness_mode,
        hardness_strength=5.0,
        mini_batch_size=mini_batch_size,
    )
    loss = build_loss(model, config)
    if mini_batch_size:
        assert type(loss) is st_losses.CachedMultipleNegativesRankingLoss and loss.mini_batch_size == 2
        inner = loss.loss
    else:
        inner = loss
    assert type(inner) is st_losses.MultipleNegativesRankingLoss
    assert inner.scale == 15.0 and inner.directions == ("query_to_doc", "doc_to_query")
    assert inner.hardness_mode == hardness_mode
    assert inner.hardness_strength == (5.0 if hardness_mode else 0.0)


def test_build_pair_losses(model):
    cosent = build_loss(model, LossConfig(name="cosent", scale=12.0))
    assert type(cosent) is st_losses.CoSENTLoss and cosent.scale == 12.0
    assert type(build_loss(model, LossConfig(name="cosine_mse"))) is st_losses.CosineSimilarityLoss


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_matryoshka_wraps_every_loss_with_capped_dims(model, name):
    plain = build_loss(model, LossConfig(name=name))
    wrapped = build_loss(model, LossConfig(name=name, matryoshka=True, matryoshka_dims=[768, 64, 16, 8]))
    assert type(wrapped) is st_losses.MatryoshkaLoss
    assert type(wrapped.loss) is type(plain)
    assert list(wrapped.matryoshka_dims) == [32, 16, 8]  # 768 and 64 exceed the tiny model's 32 dimensions


@pytest.mark.parametrize("name", ["infonce", "mnrl"])
def test_matryoshka_wraps_the_cached_losses(model, name):
    wrapped = build_loss(model, LossConfig(name=name, mini_batch_size=2, matryoshka=True))
    assert type(wrapped) is st_losses.MatryoshkaLoss and wrapped.uses_gradient_cache
    assert list(wrapped.matryoshka_dims) == [32]


# --------------------------------------------------------------------------------------- LossConfig checks


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"name": "triplet"}, "loss.name"),
        ({"guide_margin_strategy": "percent"}, "loss.guide_margin_strategy"),
        ({"guide_margin": -0.1}, "loss.guide_margin"),
        ({"isotropy_weight": -0.5}, "loss.isotropy_weight"),
        ({"matryoshka_dims": []}, "loss.matryoshka_dims"),
        ({"matryoshka_dims": [64, 0]}, "loss.matryoshka_dims"),
        ({"matryoshka_dims": [-8]}, "loss.matryoshka_dims"),
        ({"mini_batch_size": 0}, "loss.mini_batch_size"),
        ({"mini_batch_size": -2}, "loss.mini_batch_size"),
        ({"directions": ["query_to_doc", "sideways"]}, "loss.directions"),
        ({"directions": []}, "loss.directions"),
        ({"hardness_mode": "hardest"}, "loss.hardness_mode"),
        ({"hardness_strength": -1.0}, "loss.hardness_strength"),
        ({"name": "cosent", "mini_batch_size": 4}, "loss.mini_batch_size"),
        ({"name": "cosine_mse", "mini_batch_size": 4}, "loss.mini_batch_size"),
    ],
)
def test_bad_loss_settings_name_the_setting(settings, key):
    with pytest.raises(ConfigError) as error:
        LossConfig(**settings)
    assert str(error.value).startswith(f"{key}: ")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("loss.name=nope", "loss.name"),
        ("loss.guide_margin_strategy=percent", "loss.guide_margin_strategy"),
        ("loss.guide_margin=-1", "loss.guide_margin"),
        ("loss.isotropy_weight=-0.1", "loss.isotropy_weight"),
        ("loss.matryoshka_dims=64,0", "loss.matryoshka_dims"),
        ("loss.mini_batch_size=0", "loss.mini_batch_size"),
        ("loss.directions=query_to_doc,sideways", "loss.directions"),
        ("loss.hardness_mode=hardest", "loss.hardness_mode"),
    ],
)
def test_bad_loss_overrides_name_the_setting(override, key):
    with pytest.raises(ConfigError) as error:
        build_config(overrides=["data.path=beir", override])
    assert str(error.value).startswith(f"{key}: ")


def test_good_loss_settings_are_accepted():
    assert LossConfig(name="cosent").uses_pairs and LossConfig(name="cosine_mse").uses_pairs
    assert not LossConfig(name="mnrl", mini_batch_size=8).uses_pairs
    config = build_config(
        overrides=[
            "data.path=beir",
            "loss.name=mnrl",
            "loss.matryoshka_dims=64,32",
            "loss.directions=query_to_doc,doc_to_doc",
        ]
    )
    assert config.loss.matryoshka_dims == [64, 32] and config.loss.directions == ["query_to_doc", "doc_to_doc"]
    assert LossConfig(name="mnrl", hardness_mode="all_negatives").hardness_mode == "all_negatives"
    assert LossConfig(guide=True, guide_margin_strategy="relative").guide_margin_strategy == "relative"
