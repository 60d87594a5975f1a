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


def head_start(model: SentenceTransformer) -> int | None:
    """Return where ``model``'s head begins, or ``None`` when it has none.

    The head is the model's trailing run of :class:`Dense` and :class:`Normalize` modules, from its first ``Dense``
    on (an encoder's own final ``Normalize`` stays with the encoder). Such modules map sentence embeddings to sentence
    embeddings, so the model's output is the head applied to the output of the modules before it.
    """
    modules = list(model)
    start = len(modules)
    while start > 0 and isinstance(modules[start - 1], Dense | Normalize):
        start -= 1
    first_dense = next((index for index in range(start, len(modules)) if isinstance(modules[index], Dense)), None)
    return first_dense if first_dense else None  # a model that is all head has no encoder to split off


def encoder_part(model: SentenceTransformer, end: int) -> SentenceTransformer:
    """Return ``model``'s first ``end`` modules as a ``SentenceTransformer`` sharing them (not copies).

    The part keeps the model's prompts and similarity function, so it encodes (and fingerprints, for the embedding
    cache) exactly as the encoder the head was trained on.
    """
    return SentenceTransformer(
        modules=list(model)[:end],
        device=str(model.device),
        prompts=dict(model.prompts),
        default_prompt_name=model.default_prompt_name,
        similarity_fn_name=model.similarity_fn_name,
    )


def split_head(model: SentenceTransformer) -> tuple[SentenceTransformer, list[nn.Module]]:
    """Split a model ending in a head into its encoder part and the head modules; ``(model, [])`` without a head.

    The embedding cache stores the encoder part's embeddings of such a model and applies the head to them (a frozen
    encoder's are the base model's, already cached), so this pair is what both its encoding and anything copying its
    cached embeddings must key on.

    Args:
        model: A sentence-transformers model.

    Returns:
        ``(encoder, head)``: ``encoder`` shares ``model``'s modules before the head (:func:`encoder_part`), its output
        ``(n, in_dim)``; ``head`` is the list of ``Dense``/``Normalize`` modules mapping that to the model's
        ``(n, dim)`` output. ``(model, [])`` when the model has no head (:func:`head_start`).
    """
    start = head_start(model)
    return (model, []) if start is None else (encoder_part(model, start), list(model)[start:])


def apply_head(modules: list[nn.Module], embeddings: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Run sentence embeddings through head modules, without gradients or autocast, in chunks of ``chunk`` rows.

    The head always runs in its parameters' dtype, also inside an autocast context: head training scores its dev
    checkpoints that way (:class:`~embedtune.training.head_data.HeadOnCachedEmbeddings`), so selection, the report
    and ``embedtune eval`` score the shipped head alike (in bf16 it moved dev nDCG@10 by ~0.002 on a SciFact slice).

    Args:
        modules: Modules that map ``{"sentence_embedding": (n, in_dim)}`` to ``{"sentence_embedding": (n, dim)}``
            (sentence-transformers' ``Dense`` and ``Normalize``); they run on the device of their first parameter.
        embeddings: ``(n, in_dim)`` encoder embeddings.
        chunk: Rows per pass (bounds memory).

    Returns:
        ``(n, dim)`` float32 CPU tensor.
    """
    parameter = next((p for module in modules for p in module.parameters()), None)
    device = parameter.device if parameter is not None else embeddings.device
    dtype = parameter.dtype if parameter is not None else embeddings.dtype
    parts = []
    with torch.inference_mode(), torch.autocast(device.type, enabled=False):
        for part in embeddings.split(chunk):
            features = {"sentence_embedding": part.to(device=device, dtype=dtype)}
            for module in modules:
                features = module(features)
            parts.append(features["sentence_embedding"].float().cpu())
    return torch.cat(parts) if parts else embeddings.new_empty(0, 0)
