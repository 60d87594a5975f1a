"""The ONNX export's choices, in a module that imports nothing heavy (the CLI lists them without loading torch)."""

from __future__ import annotations

QUANTIZATIONS = ("none", "int8")
"""``none``: fp32 weights; ``int8``: dynamic int8 quantisation (:func:`~embedtune.export.graph.quantize_graph`)."""
ATTENTIONS = ("fused", "traced")
"""``fused``: onnxruntime's ``MultiHeadAttention`` where the model allows (fast; onnxruntime only); ``traced``: the
model's eager attention as standard ONNX operators (any ONNX runtime)."""


def check_onnx_options(quantize: str = "none", attention: str = "fused") -> None:
    """Refuse an unknown quantisation or attention, before any model loads.

    Args:
        quantize: One of :data:`QUANTIZATIONS`.
        attention: One of :data:`ATTENTIONS`.

    Raises:
        ValueError: naming the option, the allowed values and the value given.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
