"""Write a sentence-transformers model as one ONNX graph, and quantise the graph's weights to int8.

The graph is the model's whole ``forward``: the transformer, pooling, any head (Dense layers) and normalisation, from
the tokenizer's outputs (``input_ids``, ``attention_mask`` and, where the tokenizer makes them, ``token_type_ids``;
dynamic batch and sequence axes) to ``sentence_embedding`` ``(batch, dim)``. It is traced with torch's TorchScript
exporter (``torch.onnx.export(dynamo=False)``, opset :data:`OPSET`), which needs no package beyond torch and onnx.
Where the model allows, each layer's attention becomes one onnxruntime ``MultiHeadAttention`` node with a
flash-attention path for unpadded batches (:mod:`embedtune.export.attention`); otherwise the model is traced with
transformers' ``eager`` attention, because the traced SDPA path runs about 1.7x slower in onnxruntime on a CPU
(int8: 23 vs 40 documents/s for all-MiniLM-L6-v2 on 2 cores). Every attention implementation computes the same
function; the export's checks compare the result with the model as loaded normally.

Quantisation is onnxruntime's dynamic int8 quantisation (``onnxruntime.quantization.quantize_dynamic``): MatMul
weights as signed int8 per output channel, activations quantised per batch at run time, and the embedding tables
(``Gather``) stored as int8. Per-channel weights keep all-MiniLM-L6-v2 at mean cosine 0.994 to fp32; per-tensor
weights fell to 0.936. The int8 embedding tables cut its file from 59 to 23 MB (fp32: 90 MB) for a mean cosine of
0.9946 instead of 0.9949 on 512 SciFact abstracts, at the same speed.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

from embedtune.export.attention import CONTRIB_DOMAIN, CONTRIB_OPSET, MHA_OP, attention_for_export, flash_when_unpadded
from embedtune.export.options import check_onnx_options
from embedtune.models.onnx_backend import INSTALL_HINT, OUTPUT_NAME

OPSET = 17
"""ONNX opset of the exported graph (LayerNormalization is a single op from opset 17)."""
PROBE_TEXTS = ["embedtune export probe", "a second, longer probe sentence so that the batch needs padding"]
"""Texts whose tokens trace the graph (two lengths, so padding and the attention mask are part of the trace)."""
QUANTIZED_OPS = ["MatMul", "Gather"]
"""Operators whose weights are quantised: the transformer's and head's linear layers, the embedding tables."""


@dataclass(frozen=True)
class WrittenGraph:
    """What :func:`write_graph` wrote: the graph's input names, in order, and how its attention runs."""

    inputs: list[str]
    attention: str
    """``"onnxruntime MultiHeadAttention"`` (fused, flash when unpadded) or ``"traced eager"``."""


class _SentenceEmbedding(torch.nn.Module):
    """``forward(*token_tensors) -> (batch, dim)``: the model's features dict in, its ``sentence_embedding`` out."""

    def __init__(self, model: SentenceTransformer, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        features = dict(zip(self.input_names, tensors, strict=True))
        return self.model(features)[OUTPUT_NAME]


def graph_inputs(model: SentenceTransformer) -> dict[str, torch.Tensor]:
    """Tokenize :data:`PROBE_TEXTS` as the model does; returns the tensors its forward takes, each ``(2, tokens)``."""
    features = model.preprocess(PROBE_TEXTS)
    return {name: value for name, value in features.items() if isinstance(value, torch.Tensor)}


def write_graph(model: SentenceTransformer, path: Path, attention: str = "fused") -> WrittenGraph:
    """Trace ``model``'s forward into an ONNX file at ``path`` (see the module docstring).

    Args:
        model: The model, on CPU, in eval mode; its attention implementation is switched for the trace and
            restored afterwards.
        path: The ``.onnx`` file to write.
        attention: One of :data:`~embedtune.export.options.ATTENTIONS`.

    Returns:
        The graph's inputs and its attention.

    Raises:
        ImportError: if the onnx package is missing.
        ValueError: for an unknown ``attention``.
    """
    check_onnx_options(attention=attention)
    try:
        # optional dependency (the onnx extra): torch's exporter writes the graph with it
        import onnx
    except ImportError as error:
        raise ImportError(f"exporting to ONNX needs the onnx package: {INSTALL_HINT}") from error
    inputs = graph_inputs(model)
    names = list(inputs)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
    with (
        attention_for_export(model, attention == "fused") as fused,
        warnings.catch_warnings(),
        torch.inference_mode(False),
        torch.no_grad(),
    ):
        # the tracer warns about Python conditions on shapes; the export's checks compare the results
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _SentenceEmbedding(model, names).eval(),
            tuple(inputs[name] for name in names),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={**dynamic, OUTPUT_NAME: {0: "batch"}},
            custom_opsets={CONTRIB_DOMAIN: CONTRIB_OPSET} if fused else None,
        )
    if not fused:
        return WrittenGraph(names, "traced eager")
    graph = onnx.load(str(path), load_external_data=False)  # weights over 2 GB stay in their external file
    flash_when_unpadded(graph)
    onnx.save(graph, str(path))
    return WrittenGraph(names, f"onnxruntime {MHA_OP}")


def quantize_graph(source: Path, target: Path) -> None:
    """Write ``target``: ``source`` with its MatMul weights in int8 per channel and its embedding tables in int8.

    Raises:
        ImportError: if onnxruntime is missing.
    """
    try:
        # optional dependency (the onnx extra)
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        raise ImportError(f"int8 quantisation needs onnxruntime: {INSTALL_HINT}") from error
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs each skipped tensor and a pre-processing tip on the root logger
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=QUANTIZED_OPS,
            extra_options={"DefaultTensorType": 1},  # FLOAT, where onnx's shape inference leaves a type unknown
        )
    finally:
        root.setLevel(level)
