"""Run an ONNX export (``embedtune export --format onnx``) as a ``SentenceTransformer``, with onnxruntime.

An export folder holds :data:`ONNX_MODEL_FILE` (the whole model: transformer, pooling, any head and normalisation, one
graph from token ids to the sentence embedding), the tokenizer's files and
:data:`~embedtune.model_paths.ONNX_MANIFEST_FILE` (what the graph expects and what the model was: prompts,
similarity, truncation length, dimension, quantisation, the source and the export's own check figures).

:func:`load_onnx_model` wraps the graph in :class:`OnnxEncoder`, the only module of a ``SentenceTransformer`` built in
memory. Everything written for sentence-transformers models then works unchanged: ``encode_query`` and
``encode_document`` with the saved prompts, length-sorted batching, ``truncate_dim``, the embedding cache, the
evaluator, ``Retriever`` and ``embedtune serve``. The model is never saved back as a sentence-transformers folder (its
module is not one of sentence-transformers' own); the export folder is the saved form.

onnxruntime runs on the CPU here (``CPUExecutionProvider``); an enclosing torch autocast has no effect on it. It runs
each batch in slices of about :data:`TOKENS_PER_RUN` tokens, each cut to its own longest text: more slices are free
of padding and take onnxruntime's flash attention, and a slice's activations stay in cache. On a 2-core CPU the int8
export of all-MiniLM-L6-v2 encodes SciFact's abstracts 7-37 % faster in slices of 4 than in whole batches of 64,
depending on the VM (``bench/export.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.input_module import InputModule

from embedtune.model_paths import ONNX_MANIFEST_FILE, ModelNotFoundError

ONNX_MODEL_FILE = "model.onnx"
"""The graph of an export folder: inputs named as the tokenizer's outputs, output ``sentence_embedding``."""
ONNX_FORMAT = 1
"""Version of the export folder's layout and manifest; a reader refuses a newer one."""
OUTPUT_NAME = "sentence_embedding"
TOKENS_PER_RUN = 1024
"""Default slice of a batch for one onnxruntime run, in rows x padded tokens (4 texts of 256 tokens, 51 of 20)."""
INSTALL_HINT = "install the onnx extra: pip install 'embedtune[onnx]' (make test installs it)"


class OnnxEncoder(InputModule):
    """Tokenize texts and run an exported graph with onnxruntime: ``SentenceTransformer(modules=[OnnxEncoder(...)])``.

    The module's one tensor is a buffer holding the SHA-256 of the graph file (32 ``uint8``), so that the embedding
    cache's fingerprint, which hashes a model's tensors, tells two exports apart.

    Args:
        folder: The export folder (holds :data:`ONNX_MODEL_FILE` and the tokenizer).
        max_seq_length: Truncation length in tokens.
        threads: onnxruntime's intra-op threads; ``None`` or 0 lets onnxruntime choose (one per physical core).
        tokens_per_run: Each batch runs in slices of ``max(1, tokens_per_run // padded_length)`` rows, each cut to
            its longest text; ``None`` runs whole batches. Embeddings do not depend on it for an fp32 graph (an
            int8 graph quantises activations per run, so they move by about 1e-3 in cosine).

    Raises:
        ImportError: if onnxruntime is not installed (the message says how to install it).
    """

    config_keys = ["max_seq_length", "quantization", "do_lower_case"]

    def __init__(
        self,
        folder: str | Path,
        max_seq_length: int,
        threads: int | None = None,
        tokens_per_run: int | None = TOKENS_PER_RUN,
    ) -> None:
        super().__init__()
        try:
            # optional dependency (the onnx extra)
            import onnxruntime
        except ImportError as error:
            raise ImportError(f"running an ONNX export needs onnxruntime: {INSTALL_HINT}") from error
        # transformers is a dependency of sentence-transformers; imported here, where a tokenizer is built
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        self.max_seq_length = max_seq_length
        self.threads = threads
        self.tokens_per_run = tokens_per_run
        manifest = read_manifest(self.folder)
        self.quantization = manifest.get("quantization", "none")
        self.do_lower_case = bool(manifest.get("do_lower_case", False))
        self.dimension = int(manifest["dimension"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        graph = self.folder / ONNX_MODEL_FILE
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.input_names = [entry.name for entry in self.session.get_inputs()]
        digest = hashlib.sha256(graph.read_bytes()).digest()
        self.register_buffer("graph_sha256", torch.tensor(list(digest), dtype=torch.uint8))

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Tokenize ``n`` texts (``prompt`` prepended), padded to the longest and cut at ``max_seq_length``.

        Returns:
            The graph's inputs, each ``(n, tokens)`` int64.
        """
        texts = [(prompt or "") + text for text in inputs]
        texts = [text.lower() for text in texts] if self.do_lower_case else texts
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )
        return {name: encoded[name].to(torch.int64) for name in self.input_names}

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        """Run the graph on :meth:`preprocess`'s tensors, slice by slice; adds ``sentence_embedding``, ``(n, dim)``."""
        feeds = {name: features[name].cpu().numpy() for name in self.input_names}  # each (n, tokens)
        rows, width = feeds[self.input_names[0]].shape
        step = rows if self.tokens_per_run is None else max(1, self.tokens_per_run // max(width, 1))
        parts = [
            self._run({name: value[start : start + step] for name, value in feeds.items()})
            for start in range(0, rows, step)
        ]
        embeddings = np.concatenate(parts) if len(parts) != 1 else parts[0]  # (n, dim)
        return {**features, OUTPUT_NAME: torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))}

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run the graph on one slice, without the token columns that are padding in every row; ``(rows, dim)``."""
        mask = feeds.get("attention_mask")
        if mask is not None and not mask.all():
            used = mask.any(axis=0)  # (tokens,): a prefix with right padding, a suffix with left padding
            feeds = {name: np.ascontiguousarray(value[:, used]) for name, value in feeds.items()}
        (embeddings,) = self.session.run([OUTPUT_NAME], feeds)
        return embeddings

    def get_embedding_dimension(self) -> int:
        """Return the graph's output dimension (the manifest's ``dimension``)."""
        return self.dimension

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        """Refuse: an ONNX model is saved by ``embedtune export``, not as a sentence-transformers folder.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            f"an ONNX model is not saved as a sentence-transformers folder; its export folder is {self.folder}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the folder and settings (an onnxruntime session cannot be pickled), e.g. for worker processes."""
        return (OnnxEncoder, (str(self.folder), self.max_seq_length, self.threads, self.tokens_per_run))


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read an export folder's manifest (:data:`~embedtune.model_paths.ONNX_MANIFEST_FILE`).

    Raises:
        ModelNotFoundError: naming the file, if it is missing, not JSON, of a newer format or lacks a field.
    """
    path = Path(folder) / ONNX_MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelNotFoundError(f"{path}: not a readable ONNX export manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format", 0) > ONNX_FORMAT:
        raise ModelNotFoundError(f"{path}: an ONNX export of an unknown or newer format; upgrade embedtune")
    missing = [key for key in ("dimension", "max_seq_length", "similarity", "prompts") if key not in manifest]
    if missing:
        raise ModelNotFoundError(f"{path}: the manifest lacks {', '.join(missing)}")
    return manifest


def load_onnx_model(
    folder: str | Path, max_seq_length: int | None = None, threads: int | None = None
) -> SentenceTransformer:
    """Load an export folder as a ``SentenceTransformer`` whose one module runs the graph (see the module docstring).

    Args:
        folder: The export folder.
        max_seq_length: Truncation length in tokens, at most the exported one; ``None`` keeps the exported one.
        threads: onnxruntime's intra-op threads (``None``: one per physical core).

    Returns:
        A model with the source model's prompts, default prompt, similarity function and ``truncate_dim``, on CPU.

    Raises:
        ModelNotFoundError: if the folder lacks the graph or a valid manifest.
        ValueError: if ``max_seq_length`` exceeds the exported one or is below 1.
        ImportError: if onnxruntime is not installed.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if not (folder / ONNX_MODEL_FILE).is_file():
        raise ModelNotFoundError(f"{folder}: an ONNX export without its graph {ONNX_MODEL_FILE}")
    exported_length = int(manifest["max_seq_length"])
    length = exported_length if max_seq_length is None else max_seq_length
    if not 1 <= length <= exported_length:
        raise ValueError(
            f"{folder}: max_seq_length must be between 1 and the exported {exported_length}, got {length}"
        )
    model = SentenceTransformer(
        modules=[OnnxEncoder(folder, length, threads)],
        device="cpu",
        prompts=dict(manifest["prompts"]),
        default_prompt_name=manifest.get("default_prompt_name"),
        similarity_fn_name=manifest["similarity"],
        truncate_dim=manifest.get("truncate_dim"),
    )
    return model.eval()


def is_onnx_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` runs an ONNX export (its first module is an :class:`OnnxEncoder`)."""
    first = next(iter(model.children()), None)
    return isinstance(first, OnnxEncoder)
