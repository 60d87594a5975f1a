"""LoRA on a sentence-transformers encoder: target detection, what trains, saving, merging, checkpoint reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from torch import nn

from embedtune.config import ConfigError, LoraConfig
from embedtune.models.lora import (
    ADAPTER_NOTES_FILE,
    QKV_NAME,
    add_lora,
    detect_lora_targets,
    has_lora,
    merge_lora,
    save_adapter,
    trainable_parameters,
)
from tests.conftest import WORDS

TEXTS = ["what color is the apple", "the car is fast on the road", "sweet fruit on a tree", "the river and the sea"]


def build_tiny_mpnet(folder: Path) -> Path:
    """Write a randomly initialised 2-layer MPNet with mean pooling as a sentence-transformers folder."""
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertTokenizerFast, MPNetConfig, MPNetModel

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
    config = MPNetConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    hf_dir = folder / "hf"
    MPNetModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=32)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    model_dir = folder / "st"
    model.save(str(model_dir))
    return model_dir


def perturb_adapter(model: SentenceTransformer, seed: int = 0) -> None:
    """Give every LoRA ``B`` matrix random values, so that the adapter changes what the model computes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def encode(model: SentenceTransformer, texts: list[str] = TEXTS) -> torch.Tensor:
    """Embed ``texts`` in eval mode (no dropout), on the CPU whichever device the model is on (a trainer moves it)."""
    model.eval()
    return model.encode(texts, convert_to_tensor=True).cpu()


def load(path: Path) -> SentenceTransformer:
    return SentenceTransformer(str(path), device="cpu")


@pytest.fixture(scope="module")
def tiny_mpnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))


# --- target detection --------------------------------------------------------------------------------------------


def test_targets_detected_on_bert_are_query_key_value(tiny_model_dir):
    assert detect_lora_targets(load(tiny_model_dir)) == ["query", "key", "value"]


def test_targets_detected_on_mpnet_are_q_k_v(tiny_mpnet_dir):
    model = load(tiny_mpnet_dir)
    assert type(model.transformers_model).__name__ == "MPNetModel"
    assert detect_lora_targets(model) == ["q", "k", "v"]


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        *[(name, True) for name in ("q", "k", "v", "query", "key", "value", "q_proj", "k_proj", "v_proj")],
        *[(name, True) for name in ("q_lin", "k_lin", "query_proj", "value_proj", "Wqkv", "qkv", "query_key_value")],
        ("c_attn", True),
        *[(name, False) for name in ("o", "o_proj", "out_proj", "out_lin", "dense", "Wo", "c_proj", "fc1", "gate")],
    ],
)
def test_projection_names(name, matches):
    assert bool(QKV_NAME.match(name.lower())) is matches


class FusedAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.Wqkv = nn.Linear(8, 24)
        self.Wo = nn.Linear(8, 8)


class Block(nn.Module):
    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.attn = attention
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8))


class PlainAttention(nn.Module):
    """A block recognised by its attribute name ``attn`` only (its class name says nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.k = nn.Linear(8, 8)
        self.v = nn.Linear(8, 8)


def test_fused_projection_is_detected():
    model = nn.Sequential(Block(FusedAttention()), Block(FusedAttention()))
    assert detect_lora_targets(model) == ["Wqkv"]


def test_block_recognised_by_its_attribute_name():
    assert detect_lora_targets(nn.Sequential(Block(PlainAttention()))) == ["q", "k", "v"]


def test_a_name_also_used_outside_attention_gives_full_paths():
    model = nn.Sequential(Block(PlainAttention()))
    model.add_module("v", nn.Linear(8, 8))  # a "v" layer outside every attention block must get no adapter
    assert detect_lora_targets(model) == ["q", "k", "0.attn.v"]


def test_no_attention_block_is_a_config_error():
    with pytest.raises(ConfigError, match="lora.target_modules: .*no attention block found"):
        detect_lora_targets(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)))


def test_attention_without_recognisable_projections_lists_what_it_has():
    class OddAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mix = nn.Linear(8, 8)
            self.out = nn.Linear(8, 8)

    with pytest.raises(ConfigError, match="lora.target_modules: .*attention blocks: mix, out"):
        detect_lora_targets(nn.Sequential(OddAttention()))


# --- adding, counting, saving, merging ---------------------------------------------------------------------------


def test_only_adapter_parameters_train(tiny_model_dir):
    model = load(tiny_model_dir)
    _, total_before = trainable_parameters(model)
    targets = add_lora(model, LoraConfig(rank=4))

    assert targets == ["query", "key", "value"] and has_lora(model)
    trainable_names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable_names and all(".lora_A." in name or ".lora_B." in name for name in trainable_names)
    # 2 layers x 3 projections x (A: 4 x 32 + B: 32 x 4)
    assert trainable_parameters(model) == (2 * 3 * (4 * 32 + 32 * 4), total_before + 2 * 3 * (4 * 32 + 32 * 4))


def test_a_fresh_adapter_changes_nothing(tiny_model_dir):
    model = load(tiny_model_dir)
    before = encode(model)
    add_lora(model, LoraConfig(rank=4))
    assert torch.equal(encode(model), before)  # B starts at zero


def test_lora_settings_reach_the_adapter(tiny_mpnet_dir):
    model = load(tiny_mpnet_dir)
    targets = add_lora(model, LoraConfig(rank=2, alpha=6.0, dropout=0.0))
    adapter = model.transformers_model.peft_config["default"]
    assert (adapter.r, adapter.lora_alpha, adapter.lora_dropout) == (2, 6.0, 0.0)
    assert targets == ["q", "k", "v"] and set(adapter.target_modules) == {"q", "k", "v"}
    assert Path(adapter.base_model_name_or_path).is_absolute()


def test_configured_targets_are_used_and_checked(tiny_model_dir):
    model = load(tiny_model_dir)
    assert add_lora(model, LoraConfig(rank=2, target_modules=["query", "dense"])) == ["query", "dense"]
    assert any(".output.dense.lora_A." in name for name, _ in model.named_parameters())
    with pytest.raises(ConfigError, match="lora.target_modules: no module named q_proj .*query, key, value"):
        add_lora(load(tiny_model_dir), LoraConfig(target_modules=["q_proj"]))


def test_training_changes_only_the_adapter(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir)
    add_lora(model, LoraConfig(rank=4, dropout=0.0))
    base = {name: p.detach().cpu().clone() for name, p in model.named_parameters() if not p.requires_grad}
    adapter = {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}
    pairs = Dataset.from_dict({"anchor": TEXTS, "positive": list(reversed(TEXTS))})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=3,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        weight_decay=0.1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),  # as embedtune's own arguments: no warning on a CPU
    )
    SentenceTransformerTrainer(
        model=model, args=args, train_dataset=pairs, loss=MultipleNegativesRankingLoss(model)
    ).train()

    params = {name: p.detach().cpu() for name, p in model.named_parameters()}  # trained on CUDA where there is one
    assert all(torch.equal(params[name], value) for name, value in base.items())  # bit-identical, decay included
    assert any(not torch.equal(params[name], value) for name, value in adapter.items() if "lora_B" in name)


def test_merged_model_matches_the_adapter_model_and_saves_plain(tiny_mpnet_dir, tmp_path):
    model = load(tiny_mpnet_dir)
    add_lora(model, LoraConfig(rank=4))
    perturb_adapter(model)
    with_adapter = encode(model)
    assert not torch.allclose(with_adapter, encode(load(tiny_mpnet_dir)), atol=1e-3)

    merge_lora(model)
    assert not has_lora(model) and not any("lora_" in name for name, _ in model.named_parameters())
    assert torch.allclose(encode(model), with_adapter, atol=1e-5)
    model.save(str(tmp_path / "merged"))
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert torch.allclose(encode(load(tmp_path / "merged")), with_adapter, atol=1e-5)
    with pytest.raises(ValueError, match="no LoRA adapter"):
        merge_lora(model)


def test_saved_adapter_alone_reproduces_the_model_on_the_base(tiny_model_dir, tmp_path):
    model = load(tiny_model_dir)
    add_lora(model, LoraConfig(rank=4))
    perturb_adapter(model)
    save_adapter(model, tmp_path / "adapter", {"base_model": str(tiny_model_dir)})

    files = {path.name for path in (tmp_path / "adapter").iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", ADAPTER_NOTES_FILE}
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and Path(config["base_model_name_or_path"]).resolve() == tiny_model_dir.resolve()
    base = load(tiny_model_dir)
    base.load_adapter(str(tmp_path / "adapter"))
    assert torch.allclose(encode(base), encode(model), atol=1e-6)


def test_trainer_reloads_a_lora_checkpoint(tiny_model_dir, tmp_path):
    """The trainer's best-checkpoint reload must restore the adapter (a failure there is only logged)."""
    model = load(tiny_model_dir)
    add_lora(model, LoraConfig(rank=4))
    perturb_adapter(model, seed=1)
    expected = encode(model)
    model.save(str(tmp_path / "checkpoint"))
    perturb_adapter(model, seed=2)
    # No training here: the trainer stays on the CPU, so that the reloaded model's embeddings compare bit for bit.
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)
    pairs = Dataset.from_dict({"anchor": TEXTS, "positive": TEXTS})
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=pairs, loss=MultipleNegativesRankingLoss(model)
    )
    trainer._load_from_checkpoint(str(tmp_path / "checkpoint"))
    assert torch.equal(encode(model), expected)
