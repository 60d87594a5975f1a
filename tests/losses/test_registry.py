import pytest

from embedtune.config import LOSS_NAMES, LossConfig
from embedtune.losses import LOSSES, build_loss
from embedtune.losses.info_nce import InfoNCELoss


def test_every_configurable_loss_name_is_registered_and_back():
    assert set(LOSS_NAMES) == set(LOSSES)


def test_build_loss_passes_the_settings(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    loss = build_loss(model, LossConfig(name="infonce", scale=30.0, symmetric=False))
    assert isinstance(loss, InfoNCELoss) and loss.scale == 30.0 and loss.symmetric is False


def test_unknown_loss_name_is_rejected():
    config = LossConfig()
    config.name = "nope"
    with pytest.raises(ValueError, match="loss.name"):
        build_loss(None, config)
