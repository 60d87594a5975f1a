"""Training-time dropout of an encoder, set on its modules without touching its saved configuration.

Dropout inside attention has a cost beyond its regularisation: PyTorch's fused attention kernels on the CPU (flash
attention in ``scaled_dot_product_attention``) take no dropout, so any attention dropout sends every training step
through the unfused path, which materialises the ``(batch, heads, seq, seq)`` attention weights and draws a random
mask over them. ``train.dropout`` therefore sets every dropout of the encoder at once; the model's ``config.json``
keeps its own probabilities, so a saved model, and whoever fine-tunes it next, gets what the base model had.
"""

from __future__ import annotations

from torch import nn

ATTENTION_DROPOUT_ATTRIBUTE = "attention_dropout"
"""A float attribute that attention modules of decoder-style architectures (Llama, Qwen, ModernBERT...) pass to the
attention kernel instead of holding an ``nn.Dropout``."""


def set_dropout(model: nn.Module, probability: float) -> int:
    """Set every dropout probability of ``model`` in place: each ``nn.Dropout`` and each float ``attention_dropout``.

    Call it before adding LoRA adapters, whose own dropout is ``lora.dropout``. The saved configuration is left as it
    was: only the modules of this Python object change.

    Args:
        model: A model (a ``SentenceTransformer`` or any ``nn.Module``).
        probability: The dropout probability, in ``[0, 1)``.

    Returns:
        How many places were set (``0`` for a model without dropout).

    Raises:
        ValueError: if ``probability`` is outside ``[0, 1)``.
    """
    if not 0 <= probability < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {probability}")
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = probability
            changed += 1
        if isinstance(getattr(module, ATTENTION_DROPOUT_ATTRIBUTE, None), float):
            setattr(module, ATTENTION_DROPOUT_ATTRIBUTE, probability)
            changed += 1
    return changed
