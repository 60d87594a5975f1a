"""A projection head built from sentence-transformers' own modules, so a saved model loads without custom code.

sentence-transformers 6 refuses custom module classes in a saved model unless ``trust_remote_code`` is set; a head made
of :class:`Dense` and :class:`Normalize` loads with a plain ``SentenceTransformer(path)``.
"""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize
from torch import nn

from embedtune.config import HeadConfig

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "identity": nn.Identity}


def head_modules(in_dim: int, config: HeadConfig, out_weight: torch.Tensor | None = None) -> list[nn.Module]:
    """Build the head: ``layers`` Dense modules then Normalize, mapping ``(batch, in_dim)`` to unit ``(batch, dim)``.

    One layer is a linear projection (no activation). Two layers are an MLP: a square hidden Dense of width
    ``in_dim`` with ``config.activation``, initialised to the identity so the head starts close to the encoder, then
    the linear projection.

    Args:
        in_dim: Width of the encoder's sentence embedding.
        config: The head settings (``dim``, ``layers``, ``activation``).
        out_weight: ``(dim, in_dim)`` initial weight of the final projection (e.g. the top principal directions of
            the training embeddings); ``None`` keeps Dense's default initialisation.

    Returns:
        The modules to append to the encoder, last one :class:`Normalize`.

    Raises:
        ValueError: if ``out_weight`` has another shape than ``(dim, in_dim)``.
    """
    if out_weight is not None and tuple(out_weight.shape) != (config.dim, in_dim):
        raise ValueError(f"out_weight must have shape {(config.dim, in_dim)}, got {tuple(out_weight.shape)}")
    modules: list[nn.Module] = []
    if config.layers == 2:
        hidden = Dense(in_dim, in_dim, activation_function=ACTIVATIONS[config.activation]())
        with torch.no_grad():
            hidden.linear.weight.copy_(torch.eye(in_dim))
            hidden.linear.bias.zero_()
        modules.append(hidden)
    projection = Dense(in_dim, config.dim, activation_function=nn.Identity())
    if out_weight is not None:
        with torch.no_grad():
            projection.linear.weight.copy_(out_weight)
            projection.linear.bias.zero_()
    modules.append(projection)
    modules.append(Normalize())
    return modules


def add_head(model: SentenceTransformer, config: HeadConfig, out_weight: torch.Tensor | None = None) -> int:
    """Append a projection head to ``model`` in place (see :func:`head_modules`).

    Args:
        model: The encoder; its output becomes the head's input.
        config: The head settings.
        out_weight: Optional ``(dim, in_dim)`` initial projection weight.

    Returns:
        The index of the head's first module in ``model`` (modules before it are the encoder).
    """
    first = len(model)
    for module in head_modules(model.get_embedding_dimension(), config, out_weight):
        model.append(module)
    return first


def is_head_parameter(name: str, model: SentenceTransformer, head_start: int) -> bool:
    """Whether the named parameter (as in ``model.named_parameters()``) belongs to a module at or after ``head_start``.

    sentence-transformers names a parameter ``"<module index>.<path>"``, e.g. ``"2.linear.weight"``.
    """
    index = name.split(".", 1)[0]
    return index.isdigit() and int(index) >= head_start
