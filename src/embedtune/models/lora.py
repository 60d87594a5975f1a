"""LoRA adapters on a sentence-transformers encoder (Hu et al., arXiv:2106.09685), through its PEFT integration.

sentence-transformers' ``model.add_adapter(peft_config)`` hands the config to the underlying transformers model
(``PeftAdapterMixin.add_adapter``), which injects the low-rank branches in place and freezes every other weight of
that transformers model; modules after the encoder (Pooling, a projection head) are left as they are.

**Which layers get adapters** (:func:`detect_lora_targets`), when ``lora.target_modules`` is not set: the query, key
and value projections of every attention block, found from the structure rather than from a list of architectures.

1. An *attention block* is a module whose class name contains ``Attention`` (``BertSelfAttention``,
   ``MPNetAttention``, ``LlamaAttention``, ``DisentangledSelfAttention``...) or whose attribute name is ``attn``,
   ``attention``, ``self_attn`` or ``self_attention``.
2. Its projections are the ``nn.Linear`` (and GPT-2 style ``Conv1D``) layers anywhere inside it.
3. A projection is a query/key/value projection when its attribute name, lower-cased, matches :data:`QKV_NAME`: a
   role (``q``, ``k``, ``v``, ``query``, ``key``, ``value``, fused ``qkv``, ``kv`` or ``query_key_value``), an
   optional ``w`` prefix, an optional suffix ``proj``/``lin``/``linear``/``head`` — BERT and XLM-R ``query``/``key``/
   ``value``, MPNet and T5 ``q``/``k``/``v``, Llama ``q_proj``..., DistilBERT ``q_lin``..., DeBERTa ``query_proj``...,
   ModernBERT ``Wqkv``, Falcon ``query_key_value``; GPT-2's fused ``c_attn`` is named explicitly. Output projections
   (``o``, ``o_proj``, ``out_lin``, ``dense``, ``Wo``, ``c_proj``) never match.
4. The names are returned in the order first met (BERT: ``["query", "key", "value"]``). PEFT matches a target name
   against the *end* of each module path, so a name that also belongs to a linear layer outside every attention block
   is replaced by the full paths of its attention-block layers, and nothing outside attention gets an adapter.

No match raises a :class:`~embedtune.config.ConfigError` listing the attention block's linear layers, so that the
user can name them in ``lora.target_modules`` (guessing would silently train the wrong layers).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import peft
import torch
from sentence_transformers import SentenceTransformer
from torch import nn
from transformers.pytorch_utils import Conv1D

from embedtune.config import ConfigError, LoraConfig
from embedtune.io import write_json_atomic
from embedtune.runs.layout import MODEL_NOTES_FILE

logger = logging.getLogger(__name__)

QKV_NAME = re.compile(
    r"^(?:w_?)?(?:q|k|v|kv|qkv|query|key|value|query_key_value)(?:_?(?:proj|lin|linear|head))?$|^c_attn$"
)
"""Attribute names (lower-cased) of query, key and value projections, separate or fused."""
ATTENTION_ATTRIBUTES = ("attn", "attention", "self_attn", "self_attention")
"""Attribute names that mark an attention block whatever its class is called."""
ADAPTER_NOTES_FILE = MODEL_NOTES_FILE
"""Written beside the adapter: the base model it was trained on, the LoRA settings and whether a head followed."""
PROJECTION_TYPES = (nn.Linear, Conv1D)


def detect_lora_targets(model: SentenceTransformer | nn.Module) -> list[str]:
    """Find the query, key and value projections of every attention block (see the module docstring for the rule).

    Args:
        model: A sentence-transformers model (its transformers model is searched) or a transformers model.

    Returns:
        Module names for ``peft.LoraConfig.target_modules``, in the order first met: attribute names such as
        ``["query", "key", "value"]`` (BERT) or ``["q", "k", "v"]`` (MPNet), or full module paths where an attribute
        name is also used outside attention.

    Raises:
        ConfigError: naming ``lora.target_modules`` if the model has no attention block or no attention projection
            whose name marks it as a query, key or value projection.
    """
    network = _transformers_model(model)
    inside: dict[str, str] = {}  # path -> attribute name, for projections inside an attention block
    outside: set[str] = set()  # attribute names of projections outside every attention block
    blocks = [path for path, module in network.named_modules() if _is_attention_block(path, module)]
    for path, module in network.named_modules():
        if not isinstance(module, PROJECTION_TYPES):
            continue
        attribute = path.rsplit(".", 1)[-1]
        if any(path.startswith(f"{block}.") or not block for block in blocks):
            inside[path] = attribute
        else:
            outside.add(attribute)
    names = list(dict.fromkeys(attribute for attribute in inside.values() if QKV_NAME.match(attribute.lower())))
    if not names:
        architecture = type(network).__name__
        found = sorted(set(inside.values()))
        where = f"linear layers in its attention blocks: {', '.join(found)}" if found else "no attention block found"
        raise ConfigError(
            f"lora.target_modules: cannot detect the query/key/value projections of {architecture} ({where}); "
            "set lora.target_modules to the names of the layers that should get adapters"
        )
    targets: list[str] = []
    for name in names:
        if name in outside:
            targets += [path for path, attribute in inside.items() if attribute == name]
        else:
            targets.append(name)
    return targets


def add_lora(model: SentenceTransformer, config: LoraConfig) -> list[str]:
    """Add a trainable LoRA adapter (arXiv:2106.09685) to the encoder of ``model``, in place.

    The encoder's own weights are frozen; each target layer ``W`` computes ``W x + (alpha / rank) · B A dropout(x)``
    with ``A`` of shape ``(rank, in_features)`` (random) and ``B`` of shape ``(out_features, rank)`` (zeros), so the
    model starts out computing exactly what it computed before. Modules after the encoder keep their ``requires_grad``.

    Args:
        model: A sentence-transformers model whose first module is a ``Transformer``.
        config: ``lora.*``: rank, alpha, dropout and target modules (``None`` = :func:`detect_lora_targets`).

    Returns:
        The target module names the adapter was put on (the PEFT config itself is in
        ``model.transformers_model.peft_config["default"]``; its ``base_model_name_or_path`` is made absolute for a
        local folder, so checkpoints and ``adapter/`` load from any working folder).

    Raises:
        ConfigError: if targets cannot be detected, or a configured target names no layer of the encoder.
    """
    targets = list(config.target_modules) if config.target_modules else detect_lora_targets(model)
    if config.target_modules:
        _check_targets_exist(model, targets)
    lora = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        bias="none",
    )
    model.add_adapter(lora)
    network = model.transformers_model
    adapter = network.peft_config[network.active_adapters()[0]]
    base = adapter.base_model_name_or_path
    if base and Path(base).is_dir():  # an absolute path keeps checkpoints and adapter/ loadable from any folder
        adapter.base_model_name_or_path = str(Path(base).resolve())
    return targets


def has_lora(model: SentenceTransformer) -> bool:
    """Whether the encoder of ``model`` carries a PEFT adapter (unmerged)."""
    network = getattr(model, "transformers_model", None)
    return bool(getattr(network, "_hf_peft_config_loaded", False))


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """Count the parameters that train and all parameters, each tensor counted once however often it is shared.

    Returns:
        ``(trainable, total)``: elements of parameters with ``requires_grad`` and elements of all parameters.
    """
    trainable = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total


def save_adapter(model: SentenceTransformer, folder: Path, notes: dict) -> None:
    """Write the adapter alone: ``adapter_config.json``, ``adapter_model.safetensors`` and :data:`ADAPTER_NOTES_FILE`.

    The folder loads onto the base model with ``base.load_adapter(folder)`` (sentence-transformers) or
    ``peft.PeftModel.from_pretrained(AutoModel.from_pretrained(base), folder)``; it holds no head, tokenizer or
    pooling (those are in the run's ``model/``).

    Args:
        model: A model with a LoRA adapter (:func:`add_lora`).
        folder: Where to write (created; existing files of the same names are replaced).
        notes: What to record beside it, e.g. ``{"base_model": ..., "lora": {...}}``.

    Raises:
        ValueError: if ``model`` carries no adapter.
    """
    if not has_lora(model):
        raise ValueError("the model carries no LoRA adapter to save")
    model.transformers_model.save_pretrained(str(folder))
    write_json_atomic(folder / ADAPTER_NOTES_FILE, notes)


def merge_lora(model: SentenceTransformer) -> SentenceTransformer:
    """Fold the adapter into the encoder's weights in place, as PEFT's ``merge_and_unload`` does.

    Each LoRA layer's weight becomes ``W + (alpha / rank) · B A`` and the layer is replaced by its merged base layer;
    the PEFT state is removed.

    The result is a plain sentence-transformers model (it saves a full ``model.safetensors``, no adapter files) whose
    embeddings equal the adapter model's up to float rounding; every parameter trains again (``requires_grad``).

    Args:
        model: A model with a LoRA adapter.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: if ``model`` carries no adapter.
    """
    if not has_lora(model):
        raise ValueError("the model carries no LoRA adapter to merge")
    # peft: only when merging a LoRA adapter
    from peft.tuners.tuners_utils import BaseTunerLayer

    network = model.transformers_model
    tuned = [(path, module) for path, module in network.named_modules() if isinstance(module, BaseTunerLayer)]
    with torch.no_grad():
        for path, module in tuned:
            module.merge()
            parent_path, _, attribute = path.rpartition(".")
            setattr(network.get_submodule(parent_path), attribute, module.get_base_layer())
    del network.peft_config
    network._hf_peft_config_loaded = False
    _drop_adapter_key_renamings(network)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def _drop_adapter_key_renamings(network: nn.Module) -> None:
    """Forget the checkpoint-key renamings transformers kept from loading an adapter from disk.

    ``load_adapter`` stores PEFT's renamings (strip ``base_model.model.``, add the adapter name after ``lora_A``...)
    in the model's ``_weight_conversions``, which ``save_pretrained`` reverses: a merged model would be saved with
    every key prefixed by ``base_model.model.`` and load as a model of random weights. The model's other conversions
    are kept.
    """
    conversions = getattr(network, "_weight_conversions", None)
    if conversions:
        network._weight_conversions = [c for c in conversions if not _is_adapter_key_renaming(c)]


def _is_adapter_key_renaming(conversion: object) -> bool:
    patterns = " ".join(str(pattern) for pattern in getattr(conversion, "source_patterns", ()))
    return "base_model.model" in patterns or "lora_" in patterns


def _transformers_model(model: nn.Module) -> nn.Module:
    network = getattr(model, "transformers_model", None)
    return network if isinstance(network, nn.Module) else model


def _is_attention_block(path: str, module: nn.Module) -> bool:
    attribute = path.rsplit(".", 1)[-1].lower()
    return "attention" in type(module).__name__.lower() or attribute in ATTENTION_ATTRIBUTES


def _check_targets_exist(model: SentenceTransformer, targets: list[str]) -> None:
    """Raise unless every configured target is the name (or the end of the path) of some module of the encoder."""
    paths = [path for path, _ in _transformers_model(model).named_modules() if path]
    missing = [t for t in targets if not any(path == t or path.endswith(f".{t}") for path in paths)]
    if missing:
        try:
            detected = ", ".join(detect_lora_targets(model))
        except ConfigError:
            detected = "none detected"
        raise ConfigError(
            f"lora.target_modules: no module named {', '.join(missing)} in "
            f"{type(_transformers_model(model)).__name__} (attention projections: {detected})"
        )
