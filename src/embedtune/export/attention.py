"""Attention in the exported graph: onnxruntime's fused ``MultiHeadAttention``, flash attention on unpadded batches.

Traced as plain operators, a transformer's attention runs in onnxruntime as separate MatMul, Add, Softmax and
Transpose kernels over a ``(batch, heads, seq, seq)`` score tensor; onnxruntime's own fusion does not recognise the
mask pattern of transformers 5. Here the export swaps the model's attention for a function (registered with
transformers' ``AttentionInterface``) that traces into one ``com.microsoft.MultiHeadAttention`` node per layer, fed
the 2-D padding mask. onnxruntime's CPU kernel for that op has a flash-attention path (MLAS, no
``(seq, seq)`` tensor), taken only when no mask is given; :func:`flash_when_unpadded` therefore wraps each node in an
``If`` that drops the mask when the batch has no padding. Length-sorted batches of long documents (most of a corpus
truncated at ``max_seq_length``) then run the fast path; padded batches run the masked kernel. Both compute the same
function as the model's own attention; the export's checks compare the result with PyTorch.

Measured on all-MiniLM-L6-v2, 2 CPU cores, SciFact abstracts: see ``bench/export.py`` and docs/benchmarks.md.
Models whose attention does not go through ``AttentionInterface`` (MPNet in transformers 5), decoders, models with
grouped key/value heads and models with windowed attention keep the traced eager attention.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch.onnx import symbolic_helper
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

if TYPE_CHECKING:
    import onnx
    from sentence_transformers import SentenceTransformer

ONNX_ATTENTION = "embedtune_onnx_mha"
"""The attention implementation's name in transformers' registries (it must not contain "flash")."""
CONTRIB_DOMAIN = "com.microsoft"
"""onnxruntime's operator domain; the graph imports it at :data:`CONTRIB_OPSET`."""
CONTRIB_OPSET = 1
MHA_OP = "MultiHeadAttention"
_INT32 = 6  # onnx.TensorProto.INT32, the key_padding_mask type MultiHeadAttention takes
_FLOAT = 1  # onnx.TensorProto.FLOAT


class _MultiHeadAttention(torch.autograd.Function):
    """Scaled dot-product attention that exports as ``com.microsoft.MultiHeadAttention``.

    Inputs:
        +------------------+------------------------------------+
        | query            | ``(batch, seq, heads * head_dim)`` |
        | key, value       | ``(batch, kv, heads * head_dim)``  |
        | key_padding_mask | ``(batch, kv)``, 1 token, 0 pad    |
        +------------------+------------------------------------+

    Returns ``(batch, seq, heads * head_dim)``.
    """

    @staticmethod
    def forward(ctx, query, key, value, key_padding_mask, num_heads: int, scale: float):  # noqa: D102
        batch, seq, _ = query.shape
        q, k, v = (t.view(batch, t.shape[1], num_heads, -1).transpose(1, 2) for t in (query, key, value))
        scores = (q @ k.transpose(2, 3)) * scale  # (batch, heads, seq, kv)
        scores = scores.masked_fill(key_padding_mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, -1)

    @staticmethod
    def symbolic(g, query, key, value, key_padding_mask, num_heads: int, scale: float):  # noqa: D102
        mask = g.op("Cast", key_padding_mask, to_i=_INT32)
        no_bias = symbolic_helper._optional_input_placeholder_tensor(g)
        output = g.op(
            f"{CONTRIB_DOMAIN}::{MHA_OP}", query, key, value, no_bias, mask, num_heads_i=num_heads, scale_f=scale
        )
        # typed as the query (batch, seq, hidden): the fused encoders' value heads are as wide as their query heads
        output.setType(query.type())
        return output


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attend as :data:`ONNX_ATTENTION` (transformers' ``AttentionInterface`` signature).

    ``query``/``key``/``value`` ``(batch, heads, seq, head_dim)`` in, ``((batch, seq, heads, head_dim), None)`` out;
    ``attention_mask`` is the 2-D padding mask ``(batch, kv)`` (see :func:`_padding_mask`).
    """
    batch, heads, seq, head_dim = (int(size) for size in query.shape)
    scale = float(scaling if scaling is not None else head_dim**-0.5)
    if attention_mask is None:
        attention_mask = torch.ones(query.shape[0], key.shape[2], dtype=torch.long, device=query.device)

    def flat(t: torch.Tensor) -> torch.Tensor:  # (batch, heads, n, head_dim) -> (batch, n, heads * head_dim)
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], heads * t.shape[3])

    output = _MultiHeadAttention.apply(flat(query), flat(key), flat(value), attention_mask, heads, scale)
    return output.view(output.shape[0], output.shape[1], heads, -1), None


def _padding_mask(batch_size, q_length, kv_length, attention_mask=None, **kwargs):
    """Return the 2-D padding mask ``(batch, kv)`` as given (transformers' ``AttentionMaskInterface`` signature)."""
    return attention_mask


def _register() -> None:
    AttentionInterface.register(ONNX_ATTENTION, _attention)  # a dict update: registering again is harmless
    AttentionMaskInterface.register(ONNX_ATTENTION, _padding_mask)


def _supports_fused_attention(transformer: Any) -> bool:
    config = transformer.config
    if getattr(config, "is_decoder", False) or getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "sliding_window", None) or getattr(config, "local_attention", None):
        return False  # windowed attention (ModernBERT's local layers) needs more than a padding mask
    heads = getattr(config, "num_attention_heads", None)
    return heads is not None and getattr(config, "num_key_value_heads", heads) == heads


@contextmanager
def attention_for_export(model: SentenceTransformer, fused: bool = True) -> Iterator[bool]:
    """Within the block, ``model``'s transformer attends as the export traces it; restored afterwards.

    Args:
        model: A sentence-transformers model; its first module's ``auto_model`` is switched and switched back.
        fused: Switch to :data:`ONNX_ATTENTION` where the model allows; otherwise (and where it does not) switch to
            transformers' ``eager`` attention, whose traced graph onnxruntime runs faster than the traced SDPA.

    Yields:
        Whether the attention is :data:`ONNX_ATTENTION` (False: plain traced operators).
    """
    transformer = getattr(model[0], "auto_model", None)
    if transformer is None or not transformer._can_set_attn_implementation():
        yield False  # the model computes its own attention (MPNet in transformers 5): traced as it is
        return
    use_fused = fused and _supports_fused_attention(transformer)
    if use_fused:
        _register()
    previous = transformer.config._attn_implementation
    transformer.set_attn_implementation(ONNX_ATTENTION if use_fused else "eager")
    try:
        yield use_fused
    finally:
        transformer.set_attn_implementation(previous)


def flash_when_unpadded(graph: onnx.ModelProto) -> int:
    """Wrap each ``MultiHeadAttention`` node of ``graph`` in an ``If``: without its mask when the batch has no padding.

    The condition is the node's own ``key_padding_mask`` being all ones (``ReduceMin == 1``), so it holds per batch
    at run time. Edits ``graph`` in place.

    Args:
        graph: The exported model; nodes of other types are kept as they are.

    Returns:
        How many nodes were wrapped.
    """
    # optional dependency (the onnx extra): the caller has already written the graph with it
    from onnx import helper

    nodes = list(graph.graph.node)
    del graph.graph.node[:]
    one = "embedtune_one"
    graph.graph.node.append(helper.make_node("Constant", [], [one], value=helper.make_tensor(one, _INT32, [], [1])))
    wrapped = 0
    for node in nodes:
        if node.domain != CONTRIB_DOMAIN or node.op_type != MHA_OP or len(node.input) < 5:
            graph.graph.node.append(node)
            continue
        name, mask, output = node.name or f"mha_{wrapped}", node.input[4], node.output[0]
        graph.graph.node.extend(
            [
                helper.make_node("ReduceMin", [mask], [f"{name}_mask_min"], keepdims=0),
                helper.make_node("Equal", [f"{name}_mask_min", one], [f"{name}_no_padding"]),
                helper.make_node(
                    "If",
                    [f"{name}_no_padding"],
                    [output],
                    name=f"{name}_if_unpadded",
                    then_branch=_branch(node, f"{name}_flash", list(node.input[:3])),
                    else_branch=_branch(node, f"{name}_masked", list(node.input)),
                ),
            ]
        )
        wrapped += 1
    return wrapped


def _branch(node: onnx.NodeProto, name: str, inputs: list[str]) -> onnx.GraphProto:
    """Build a one-node subgraph: ``node`` with ``inputs`` (outer-scope names), its output renamed to ``name``."""
    from onnx import helper  # optional dependency (the onnx extra)

    inner = helper.make_node(node.op_type, inputs, [name], name=name, domain=node.domain)
    inner.attribute.extend(node.attribute)
    return helper.make_graph([inner], name, [], [helper.make_tensor_value_info(name, _FLOAT, None)])
