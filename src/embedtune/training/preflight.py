"""What a run checks before any model loads or any run folder exists; ``embedtune train --check`` runs the same.

:func:`check_run_inputs` validates the data, the objective's fit to it, the curriculum, the extra evaluation sets,
the runs folder and a guide model; :func:`fit_data_to_loss` shapes labelled pairs for the objective.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from embedtune.config import ConfigError, ExperimentConfig, LossConfig
from embedtune.data.curriculum import check_curriculum
from embedtune.data.eval_splits import load_extra_split
from embedtune.data.pairs import RELEVANT_LABEL, pairs_as_training_examples
from embedtune.data.prepare import EvalSplit, PreparedData, prepare_data
from embedtune.losses.registry import objective_of, uses_guide_model
from embedtune.model_paths import check_model_available
from embedtune.runs import check_runs_dir
from embedtune.training import mode
from embedtune.training.dataset import check_teacher_scores, with_negatives

logger = logging.getLogger(__name__)


def check_run_inputs(config: ExperimentConfig) -> tuple[PreparedData, list[EvalSplit]]:
    """Validate everything a run needs that can be checked without loading its model, and prepare its data.

    Args:
        config: The resolved run settings.

    Returns:
        ``(data, extra_splits)``: the prepared data fitted to the objective (:func:`fit_data_to_loss`; without its
        test split when ``eval.report_test`` is false) and the ``eval.extra_datasets`` splits.

    Raises:
        embedtune.errors.DataError: naming the file, line and field, for malformed data or an unreadable extra set.
        ConfigError: for settings the data, the objective, the curriculum or the installed libraries cannot take.
        embedtune.runs.RunStoreError: if the runs folder cannot be used.
        embedtune.model_paths.ModelNotFoundError: if ``loss.guide_model`` cannot be found.
    """
    mode.check_mode_libraries(config)  # e.g. a transformers that refuses the installed peft, before anything loads
    data = prepare_data(config.data)
    data = data if config.eval.report_test else data.without_test()  # a tune trial never sees test
    data = fit_data_to_loss(config.loss, data)
    check_curriculum(config, data)  # a bad phase or unscored data stops here, before any model loads
    extra_splits = [load_extra_split(spec) for spec in config.eval.extra_datasets]
    check_runs_dir(config.runs_dir)
    if uses_guide_model(config.loss):
        check_model_available(config.loss.guide_model)
    return data, extra_splits


def fit_data_to_loss(loss: LossConfig, data: PreparedData) -> PreparedData:
    """Check that the objective can train on the data, and shape labelled pairs for an InfoNCE-style objective.

    A pair objective (cosent, cosine_mse) trains on the labelled pairs themselves. Any other objective trains on
    :func:`~embedtune.data.pairs.pairs_as_training_examples` of them: per ``(text1, phase)``, the relevant pairs as
    positives and the others as hard negatives, the phase kept for a curriculum. The pair diagnostics still use the
    held-out pairs either way.

    Returns:
        ``data`` unchanged, or with ``train_examples`` built from ``train_pairs`` and ``train_pairs`` cleared.

    Raises:
        ConfigError: if a pair objective gets (query, positive, negatives) data, naming the setting; or when no
            training pair of an InfoNCE-style run is labelled relevant; or when a distillation objective gets a
            record without a teacher score (``pos_scores`` / ``neg_scores``), no record with a hard negative, or
            labelled pairs (records without a hard negative are dropped for it, with a warning).
    """
    has_pairs = data.train_pairs is not None
    if objective_of(loss).teacher_scores:
        data = _fit_teacher_scores(loss, data)
    if loss.uses_pairs and not has_pairs:
        raise ConfigError(
            f"loss.name: {loss.name} trains on labelled pairs; set data.train_file to a JSONL file of "
            '{"text1", "text2", "label"} records'
        )
    if not has_pairs or loss.uses_pairs:
        return data
    examples = pairs_as_training_examples(data.train_pairs)
    if not examples:
        raise ConfigError(
            f"loss.name: {loss.name} trains on (query, positive) rows, but no training pair is labelled >= "
            f"{RELEVANT_LABEL}; use loss.name=cosent or cosine_mse"
        )
    logger.info(
        "Labelled pairs with %s: %d pairs grouped into %d (query, positives, hard negatives) rows by text1 and phase",
        loss.name,
        len(data.train_pairs),
        len(examples),
    )
    counts = dict(data.counts, train_examples=len(examples))
    return replace(data, train_examples=examples, train_pairs=None, counts=counts)


def _fit_teacher_scores(loss: LossConfig, data: PreparedData) -> PreparedData:
    """Drop records without a hard negative (no margin to learn) and refuse any without teacher scores."""
    try:
        if data.train_pairs is not None:
            raise ValueError("labelled pairs carry no teacher scores")
        examples, dropped = with_negatives(data.train_examples)
        mix = [replace(source, examples=with_negatives(source.examples)[0]) for source in data.mix]
        dropped += sum(len(before.examples) - len(after.examples) for before, after in zip(data.mix, mix, strict=True))
        if not examples:
            raise ValueError("no training record has a hard negative")
        check_teacher_scores(examples + [example for source in mix for example in source.examples])
    except ValueError as error:
        raise ConfigError(
            f"loss.name: {loss.name} trains on teacher scores, but {error}; score the training file with "
            "`embedtune mine --teacher MODEL` or give pos_scores/neg_scores in data.train_file"
        ) from None
    if dropped:
        logger.warning(
            "%s: dropped %d training records without a hard negative (nothing to distil)", loss.name, dropped
        )
    return replace(data, train_examples=examples, mix=mix, counts=dict(data.counts, train_examples=len(examples)))
