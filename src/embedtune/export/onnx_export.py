"""``embedtune export --format onnx [--quantize int8]``: a run's model as an ONNX folder, checked before it is written.

Steps, in order: the run, the output folder and the check split are validated (nothing loaded yet); the model is
loaded once and traced with its attention switched for the trace only (:mod:`embedtune.export.graph`); the graph,
the tokenizer and the manifest are written to a staging folder beside ``OUT``; the staged export is loaded with
onnxruntime and checked against the PyTorch model on the run's dev split (:mod:`embedtune.export.checks`). Only an
export that passes is renamed to ``OUT``; one that fails is removed and the error gives the figures. ``OUT`` then
loads with :func:`embedtune.models.loading.load_model` (and every ``--model`` option of the command line).

sentence-transformers' own ONNX backend (``backend="onnx"``) needs optimum's ONNX exporter (optimum-onnx), whose
newest release (0.1.0) requires transformers < 4.58, which sentence-transformers 6 cannot use; hence this exporter,
on ``torch.onnx`` and onnxruntime alone. When an optimum release works with the installed transformers, this module
should give way to ``SentenceTransformer(..., backend="onnx")`` and ``export_dynamic_quantized_onnx_model``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers import SentenceTransformer

from embedtune.cache.fingerprint import model_fingerprint
from embedtune.config import config_from_dict
from embedtune.data.prepare import prepare_data
from embedtune.errors import DataError
from embedtune.evaluation.retrieval_evaluator import subsample_corpus
from embedtune.export.checks import ExportCheck, check_export
from embedtune.export.folder import ExportSource, export_source, staging_folder
from embedtune.export.graph import OPSET, WrittenGraph, graph_inputs, quantize_graph, write_graph
from embedtune.export.options import check_onnx_options
from embedtune.io import file_sha256, write_json_atomic
from embedtune.model_paths import ONNX_MANIFEST_FILE
from embedtune.models.onnx_backend import ONNX_FORMAT, ONNX_MODEL_FILE, load_onnx_model
from embedtune.runs import read_run_record
from embedtune.search.encoding import model_similarity
from embedtune.versions import installed_version

if TYPE_CHECKING:
    from embedtune.cache import EmbeddingCache
    from embedtune.data.types import EvalSplit

logger = logging.getLogger(__name__)

VERSIONED = ("embedtune", "torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")
"""Libraries whose versions the manifest records."""
FP32_GRAPH = "model.fp32.onnx"
"""The traced graph inside the staging folder while it is quantised (not part of an int8 export)."""


class ExportCheckError(ValueError):
    """The export differs from the PyTorch model by more than the check allows; nothing was written."""


@dataclass(frozen=True)
class OnnxExport:
    """A written export: its folder and the check it passed."""

    path: Path
    check: ExportCheck


def export_onnx(
    run: str | Path,
    out: str | Path,
    quantize: str = "none",
    merge: bool = False,
    runs_dir: str | Path = "runs",
    check_split: EvalSplit | None = None,
    check_max_docs: int | None = None,
    batch_size: int | None = None,
    cache: EmbeddingCache | None = None,
    attention: str = "fused",
) -> OnnxExport:
    """Export the model of ``run`` to the new folder ``out`` as ONNX, checked first (see the module docstring).

    Args:
        run: A run folder or reference (folder name, run name, unique suffix) under ``runs_dir``.
        out: The folder to create; must not exist.
        quantize: ``"none"`` (fp32) or ``"int8"`` (dynamic int8, per-channel weights).
        merge: Merge a LoRA adapter left in the model folder; required for a LoRA run.
        runs_dir: Where run references are looked up.
        check_split: The split the export is checked on; ``None``: the run's dev split, prepared from its data.
        check_max_docs: Rank a subsample of the check split's corpus (every judged document plus a seeded random
            fill) instead of all of it; faster, and easier to rank, so a weaker check.
        batch_size: Texts per forward pass while checking; ``None`` sizes it for the device.
        cache: Embedding cache for the PyTorch model's check embeddings (an fp32 and an int8 export of one run
            encode them once); ``None`` encodes them.
        attention: ``"fused"`` (onnxruntime's ``MultiHeadAttention`` where the model allows) or ``"traced"``
            (standard ONNX operators only, for other runtimes); see :mod:`embedtune.export.attention`.

    Returns:
        The written folder and its check.

    Raises:
        ValueError: for an unknown quantisation or attention, an existing ``out``, an unresolvable run, a LoRA run
            without ``merge`` or a ``check_max_docs`` below 1.
        embedtune.errors.DataError: if the run's data can no longer be read (give ``check_split``).
        ExportCheckError: with the figures, if the export fails its check (``out`` is not created).
        ImportError: if onnx or onnxruntime is missing.
    """
    check_onnx_options(quantize, attention)
    if check_max_docs is not None and check_max_docs < 1:
        raise ValueError(f"check_max_docs must be at least 1, got {check_max_docs}")
    target = Path(out)
    source = export_source(run, target, merge, runs_dir)
    split = check_split if check_split is not None else run_dev_split(source.run)
    if check_max_docs is not None:
        split = _subsampled(split, check_max_docs)
    return write_onnx_export(source, target, split, quantize, batch_size, cache, attention)


def write_onnx_export(
    source: ExportSource,
    out: Path,
    split: EvalSplit,
    quantize: str = "none",
    batch_size: int | None = None,
    cache: EmbeddingCache | None = None,
    attention: str = "fused",
) -> OnnxExport:
    """Trace, stage, check and write the export of ``source`` (the steps after :func:`export_onnx`'s validation).

    ``source`` may describe a plain model folder (``ExportSource(folder, folder, "base", False)``), e.g. to export a
    base model for a benchmark.

    Raises:
        ValueError: for an unknown quantisation or attention, or an existing ``out``.
        ExportCheckError: with the figures, if the export fails its check (``out`` is not created).
    """
    check_onnx_options(quantize, attention)
    if out.exists() or out.is_symlink():
        raise ValueError(f"{out} already exists; export writes a new folder and never overwrites one")
    reference = source.load()
    start = time.perf_counter()
    with staging_folder(out) as staging:
        manifest = _write_export(source, reference, staging, quantize, attention)
        check = check_export(reference, load_onnx_model(staging), split, quantize, batch_size, cache)
        logger.info("Export check %s", check.summary())
        if not check.passed:
            raise ExportCheckError(f"the {_label(quantize)} export of {source.run.name} is refused: {check.summary()}")
        manifest["check"] = check.record()
        manifest["export_seconds"] = round(time.perf_counter() - start, 1)
        write_json_atomic(staging / ONNX_MANIFEST_FILE, manifest)
    logger.info("Exported %s as %s ONNX to %s", source.model_dir, _label(quantize), out)
    return OnnxExport(out, check)


def run_dev_split(run: Path) -> EvalSplit:
    """Prepare the run's data from its recorded settings and return its dev split (the selection split).

    Raises:
        embedtune.errors.DataError: naming the file, if the run's data is missing or changed beyond use.
        ValueError: if the run recorded a relative data path that does not lead to its data from here.
    """
    config = config_from_dict(read_run_record(run).config)
    try:
        return prepare_data(config.data).dev
    except DataError as error:
        recorded = Path(config.data.path)
        if recorded.is_absolute() or recorded.exists():
            raise
        raise ValueError(
            f"{error} (the run recorded its data as {str(recorded)!r}, relative to the folder it was trained from: "
            "export from that folder)"
        ) from None


def _subsampled(split: EvalSplit, max_docs: int) -> EvalSplit:
    corpus = subsample_corpus(split.corpus, split.qrels, max_docs)
    source = f"{split.source}; {len(corpus)} of its {len(split.corpus)} documents (judged ones and a seeded sample)"
    return replace(split, corpus=corpus, source=source)


def _write_export(
    source: ExportSource, reference: SentenceTransformer, staging: Path, quantize: str, attention: str
) -> dict[str, Any]:
    """Write the graph, the tokenizer and a manifest (no check yet) into ``staging``; return the manifest."""
    staging.mkdir()
    graph = staging / ONNX_MODEL_FILE
    fp32_graph = staging / FP32_GRAPH if quantize == "int8" else graph
    written = write_graph(reference, fp32_graph, attention)
    if quantize == "int8":
        quantize_graph(fp32_graph, graph)
        fp32_graph.unlink()
    reference.tokenizer.save_pretrained(str(staging))
    manifest = _manifest(source, reference, written, quantize, file_sha256(graph))
    write_json_atomic(staging / ONNX_MANIFEST_FILE, manifest)
    return manifest


def _manifest(
    source: ExportSource, reference: SentenceTransformer, written: WrittenGraph, quantize: str, graph_sha256: str
) -> dict[str, Any]:
    with torch.no_grad():
        dimension = int(reference(graph_inputs(reference))["sentence_embedding"].shape[1])
    return {
        "format": ONNX_FORMAT,
        "source": {"run": str(source.run), "model": str(source.model_dir), "mode": source.mode},
        "source_fingerprint": model_fingerprint(reference),
        "graph": ONNX_MODEL_FILE,
        "graph_sha256": graph_sha256,
        "opset": OPSET,
        "quantization": quantize,
        "attention": written.attention,
        "inputs": written.inputs,
        "dimension": dimension,
        "max_seq_length": reference.max_seq_length,
        "do_lower_case": bool(getattr(reference[0], "do_lower_case", False)),
        "similarity": model_similarity(reference),
        "prompts": dict(reference.prompts),
        "default_prompt_name": reference.default_prompt_name,
        "truncate_dim": reference.truncate_dim,
        "versions": {name: installed_version(name) for name in VERSIONED},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _label(quantize: str) -> str:
    return "int8" if quantize == "int8" else "fp32"
