"""Evaluate several models on several BEIR datasets, beside a baseline, with paired significance per model.

The logic behind ``embedtune eval``: resolve the models (no weights loaded), load and validate every dataset, then
load each distinct model once and evaluate it on every dataset, keeping the per-query scores; compare each model
with the baseline query by query (:func:`~embedtune.evaluation.significance.compare_per_query`); format the tables
and verdict lines; write ``summary.json`` and ``per_query.jsonl``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from embedtune.cache import EmbeddingCache
from embedtune.config.metric_names import DEFAULT_METRICS
from embedtune.evaluation.compare_inputs import EvalDataset, LoadSettings, ModelSource, check_model_labels
from embedtune.evaluation.metrics import average_per_query
from embedtune.evaluation.report import format_side_by_side
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.evaluation.significance import PairedComparison, compare_per_query
from embedtune.io import jsonl_line, write_json_atomic, write_lines_atomic

logger = logging.getLogger(__name__)

VERDICT_METRIC = "ndcg@10"
"""The metric each model is tested on against the baseline."""

SUMMARY_FILE = "summary.json"
PER_QUERY_FILE = "per_query.jsonl"

PerQuery = dict[str, dict[str, float]]
"""Query id -> metric name -> value."""


@dataclass
class DatasetResult:
    """Every system's scores on one dataset.

    Attributes:
        dataset: The dataset.
        baseline: The baseline's per-query scores, or ``None`` without a baseline.
        models: Per-query scores of each model, in the order of :attr:`EvalResults.models`.
        comparisons: Each model against the baseline on :data:`VERDICT_METRIC` (empty without a baseline).
        seen_unseen: With ``--train-data``, each model's comparison split into seen and unseen queries
            (:func:`embedtune.evaluation.seen_unseen.split_comparison`); else empty.
    """

    dataset: EvalDataset
    baseline: PerQuery | None
    models: list[PerQuery]
    comparisons: list[PairedComparison] = field(default_factory=list)
    seen_unseen: list[dict[str, Any]] = field(default_factory=list)

    def means(self, per_query: PerQuery) -> dict[str, float]:
        """Average one system's per-query scores on this dataset (``trec_eval -c`` means).

        Args:
            per_query: :attr:`baseline` or an entry of :attr:`models`.

        Returns:
            Metric name -> mean over the dataset's judged queries.
        """
        return average_per_query(self.dataset.data.qrels, per_query)


@dataclass
class EvalResults:
    """The outcome of :func:`evaluate_models`.

    Attributes:
        models: The evaluated models, in column order.
        baseline: The reference model, or ``None``.
        datasets: One result per dataset, in the order given.
        metrics: Metric names, in row order.
        resamples: Resamples of the significance tests.
        seed: Seed of the significance tests.
        alpha: Significance level.
    """

    models: list[ModelSource]
    baseline: ModelSource | None
    datasets: list[DatasetResult]
    metrics: list[str]
    resamples: int
    seed: int
    alpha: float

    def format(self) -> str:
        """Render every dataset: a header line, the side-by-side table, then one verdict line per model.

        Returns:
            Plain text, datasets separated by a blank line.
        """
        blocks = []
        for result in self.datasets:
            data = result.dataset.data
            pairs = zip(self.models, result.models, strict=True)
            columns = [(model.label, result.means(scores)) for model, scores in pairs]
            baseline = None
            if self.baseline is not None and result.baseline is not None:
                baseline = (self.baseline.label, result.means(result.baseline))
            lines = [
                f"{result.dataset.name}: {len(data.qrels)} queries, {len(data.corpus)} documents",
                format_side_by_side(columns, baseline, title="metric"),
            ]
            lines += [comparison.verdict for comparison in result.comparisons]
            lines += [
                f"{model.label} seen/unseen: {split['verdict']}"
                for model, split in zip(self.models, result.seen_unseen, strict=False)
            ]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def summary(self) -> dict[str, Any]:
        """Build the content of ``summary.json``.

        Returns:
            ``{"metrics": [...], "verdict_metric", "resamples", "seed", "alpha", "baseline": model | None,
            "models": [model, ...], "datasets": [{"name", "folder", "split", "queries", "documents",
            "baseline": {"label", "means"} | None, "models": [{"label", "means", "delta" | None,
            "comparison" | None}]}]}`` where a model is ``{"label", "path", "run", "base_model", "settings"}``
            (``settings``: :class:`LoadSettings` as a dict), ``means`` and ``delta`` (model - baseline) map metric ->
            value, and ``comparison`` is :meth:`PairedComparison.to_dict`.
        """
        datasets = []
        for result in self.datasets:
            base_means = None
            if self.baseline is not None and result.baseline is not None:
                base_means = result.means(result.baseline)
            models = []
            for index, (model, scores) in enumerate(zip(self.models, result.models, strict=True)):
                means = result.means(scores)
                entry: dict[str, Any] = {"label": model.label, "means": means, "delta": None, "comparison": None}
                if base_means is not None:
                    entry["delta"] = {metric: means[metric] - base_means[metric] for metric in means}
                    entry["comparison"] = result.comparisons[index].to_dict()
                if result.seen_unseen:
                    entry["seen_unseen"] = result.seen_unseen[index]
                models.append(entry)
            datasets.append(
                {
                    "name": result.dataset.name,
                    "folder": str(result.dataset.folder),
                    "split": result.dataset.split,
                    "queries": len(result.dataset.data.qrels),
                    "documents": len(result.dataset.data.corpus),
                    "baseline": None if base_means is None else {"label": self.baseline.label, "means": base_means},
                    "models": models,
                }
            )
        return {
            "metrics": list(self.metrics),
            "verdict_metric": VERDICT_METRIC,
            "resamples": self.resamples,
            "seed": self.seed,
            "alpha": self.alpha,
            "baseline": None if self.baseline is None else _model_dict(self.baseline),
            "models": [_model_dict(model) for model in self.models],
            "datasets": datasets,
        }

    def per_query_lines(self) -> Iterator[str]:
        """Yield the lines of ``per_query.jsonl``: one JSON object per dataset, system and judged query.

        Each object is ``{"dataset", "model", "role": "baseline" | "model", "query_id", <metric>: value, ...}``,
        baseline first, then the models in order; queries in the split's order.
        """
        for result in self.datasets:
            systems: list[tuple[str, str, PerQuery]] = []
            if self.baseline is not None and result.baseline is not None:
                systems.append((self.baseline.label, "baseline", result.baseline))
            pairs = zip(self.models, result.models, strict=True)
            systems += [(model.label, "model", scores) for model, scores in pairs]
            for label, role, per_query in systems:
                for query_id, values in per_query.items():
                    record = {"dataset": result.dataset.name, "model": label, "role": role, "query_id": query_id}
                    yield jsonl_line({**record, **values})


def write_results(results: EvalResults, out: str | Path) -> Path:
    """Create the folder ``out`` and write ``summary.json`` and ``per_query.jsonl`` into it, each atomically.

    Args:
        results: What :func:`evaluate_models` returned.
        out: A folder that must not exist yet (its parents are created).

    Returns:
        The folder.

    Raises:
        FileExistsError: if ``out`` exists (created meanwhile); nothing is overwritten.
        OSError: if the folder or a file cannot be written.
    """
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=False)
    write_json_atomic(folder / SUMMARY_FILE, results.summary())
    write_lines_atomic(folder / PER_QUERY_FILE, results.per_query_lines())
    return folder


def evaluate_models(
    datasets: Sequence[EvalDataset],
    models: Sequence[ModelSource],
    baseline: ModelSource | None,
    load_model: Callable[[ModelSource], SentenceTransformer],
    batch_size: int | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    cache: EmbeddingCache | None = None,
    devices: list[str] | None = None,
    precision: str = "fp32",
) -> EvalResults:
    """Evaluate each model (and the baseline) on each dataset, and compare each model with the baseline.

    Each distinct model (path and load settings) is loaded once (the baseline first), evaluated on every dataset in
    turn, and released before the next is loaded; a model also given as the baseline is evaluated once.

    Args:
        datasets: Loaded datasets (:func:`load_datasets`).
        models: The models to report, at least one.
        baseline: The reference model, or ``None`` (then no deltas and no comparisons).
        load_model: Loads a model from its :class:`ModelSource` (its path and :class:`LoadSettings`, with the
            prompts and length the caller wants on top).
        batch_size: Texts per forward pass; ``None`` sizes it for the device.
        metrics: Metric names reported; must include :data:`VERDICT_METRIC` when there is a baseline.
        resamples: Resamples of the bootstrap and randomisation test.
        seed: Seed of the significance tests.
        alpha: Significance level of the verdicts.
        cache: On-disk embedding cache: a model evaluated before, unchanged (weights, prompts, length), on the same
            texts is not encoded again; ``None`` encodes everything.
        devices: Encode in one process per device (:func:`~embedtune.search.encoding.encoding_devices`); ``None``
            encodes in this process.
        precision: Autocast precision of encoding, the same for every model (see
            :func:`~embedtune.models.precision.inference_dtype`).

    Returns:
        The per-query scores of every system on every dataset, and the comparisons.

    Raises:
        ValueError: if ``models`` or ``datasets`` is empty, two models share a label, or the verdict metric is not
            among ``metrics`` while there is a baseline.
    """
    metrics = [metric.strip().lower() for metric in metrics]
    if not models or not datasets:
        raise ValueError("nothing to evaluate: give at least one --model and one --data")
    check_model_labels(models)
    if baseline is not None and VERDICT_METRIC not in metrics:
        raise ValueError(f"comparing with a baseline needs {VERDICT_METRIC} among the metrics")
    evaluators = [
        RetrievalEvaluator(
            dataset.data.corpus,
            dataset.data.queries,
            dataset.data.qrels,
            metrics=metrics,
            batch_size=batch_size,
            cache=cache,
            devices=devices,
            precision=precision,
        )
        for dataset in datasets
    ]
    systems = ([baseline] if baseline is not None else []) + list(models)
    scores: dict[tuple[str, LoadSettings], list[PerQuery]] = {}
    for system in systems:
        if _key(system) in scores:
            continue
        settings = system.settings.describe()
        logger.info("Loading %s%s", system.label, f" ({settings}, as its runs loaded it)" if settings else "")
        model = load_model(system)
        scores[_key(system)] = []
        for dataset, evaluator in zip(datasets, evaluators, strict=True):
            logger.info(
                "Evaluating %s on %s (%d queries, %d documents)",
                system.label,
                dataset.name,
                len(dataset.data.qrels),
                len(dataset.data.corpus),
            )
            evaluator(model)
            scores[_key(system)].append(evaluator.last_per_query)
        del model
    results = []
    for index, dataset in enumerate(datasets):
        base_scores = scores[_key(baseline)][index] if baseline is not None else None
        result = DatasetResult(dataset, base_scores, [scores[_key(model)][index] for model in models])
        if base_scores is not None:
            result.comparisons = [
                compare_per_query(
                    _column(base_scores, VERDICT_METRIC),
                    _column(model_scores, VERDICT_METRIC),
                    metric=VERDICT_METRIC,
                    resamples=resamples,
                    seed=seed,
                    alpha=alpha,
                    labels=(baseline.label, model.label),
                )
                for model, model_scores in zip(models, result.models, strict=True)
            ]
        results.append(result)
    return EvalResults(list(models), baseline, results, metrics, resamples, seed, alpha)


def _key(system: ModelSource) -> tuple[str, LoadSettings]:
    """Return what makes two systems the same model: its path and how it is loaded."""
    return system.path, system.settings


def _column(per_query: PerQuery, metric: str) -> dict[str, float]:
    """Query id -> the value of one metric."""
    return {query_id: values[metric] for query_id, values in per_query.items()}


def _model_dict(model: ModelSource) -> dict[str, Any]:
    """Build a model's entry in ``summary.json``."""
    return {
        "label": model.label,
        "path": model.path,
        "run": None if model.run is None else str(model.run),
        "base_model": model.base_model,
        "settings": asdict(model.settings),
    }
