"""The study's answer: the best trial's configuration (a YAML for ``embedtune train --config``) and its test figures.

Trials never see test. Once the study stops, the best trial (by dev) is evaluated on test once, beside the base
model, overall and on seen / unseen queries apart, with the paired test, and the figures are kept in
``best_test.json`` (every metric per query in ``best_per_query.json``, for paired comparisons with other runs);
asking again for the same best trial reads them instead of evaluating again. When a resumed or
parallel study finds a better trial later, that one is evaluated once too, and the file keeps the trials evaluated
before it (``earlier``), so nobody can pick among test figures unseen.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna
import yaml
from sentence_transformers import SentenceTransformer

from embedtune.config import config_from_dict
from embedtune.config.files import apply_overrides
from embedtune.data.prepare import prepare_data
from embedtune.evaluation.seen_unseen import seen_queries, split_comparison, training_positives
from embedtune.io import atomic_file, write_json_atomic
from embedtune.models.loading import load_base_model
from embedtune.runs import CHOSEN_FINE_TUNED, load_run
from embedtune.runs.layout import MODEL_DIR
from embedtune.training.final_eval import FinalEvaluation, per_query_record
from embedtune.training.preflight import fit_data_to_loss
from embedtune.tuning.objective import RUN_ATTR, SHIPS_ATTR

logger = logging.getLogger(__name__)

BEST_CONFIG_FILE = "best.yaml"
BEST_TEST_FILE = "best_test.json"
BEST_PER_QUERY_FILE = "best_per_query.json"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """Return the study's answer among the complete trials with a run folder, or ``None`` before any finished.

    A trial whose run ships its fine-tuned model (it beat the base model on dev under the run's selection rule) wins
    over any that ships the base model; among those, the highest dev value, then the earliest trial. When no trial
    beat the base, the answer is the highest dev value, and its run (so ``best.yaml`` too) ships the base model.
    """
    complete = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if RUN_ATTR in trial.user_attrs and trial.value is not None
    ]
    return max(complete, key=lambda trial: (ships_fine_tuned(trial), trial.value, -trial.number), default=None)


def ships_fine_tuned(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's run ships its fine-tuned model.

    Trials of studies made before the attribute existed are read from their run's ``metrics.json``; one whose run
    can no longer be read counts as shipping, as those studies ranked it.
    """
    ships = trial.user_attrs.get(SHIPS_ATTR)
    if ships is None:
        metrics = load_run(trial.user_attrs[RUN_ATTR]).metrics if RUN_ATTR in trial.user_attrs else None
        ships = metrics.selection.chosen if metrics is not None else CHOSEN_FINE_TUNED
    return ships == CHOSEN_FINE_TUNED


def best_config(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Return the settings of ``trial``'s run as an ordinary run: test reported, no study, named ``<study>-best``.

    Returns:
        Nested settings (``ExperimentConfig.to_dict()``).

    Raises:
        ValueError: naming the folder, when the trial's run folder has no readable record.
    """
    record = load_run(trial.user_attrs[RUN_ATTR]).record
    if record is None:
        raise ValueError(f"{trial.user_attrs[RUN_ATTR]}: the run record of trial {trial.number} cannot be read")
    study = record.config.get("study") or "study"
    overrides = [f"name={study}-best", "study=null", "eval.report_test=true"]
    return config_from_dict(apply_overrides(record.config, overrides)).to_dict()


def write_best_config(folder: Path, trial: optuna.trial.FrozenTrial) -> Path:
    """Write ``best.yaml`` (see :func:`best_config`) into the study folder, atomically; returns its path."""
    path = folder / BEST_CONFIG_FILE
    # its relative paths (data, runs folder) are the study's, relative to the folder the study ran in
    header = (
        f"# Best trial {trial.number} (dev {trial.value:.4f}); reproduce from {Path.cwd()} with: "
        f"embedtune train --config {path}\n"
    )
    with atomic_file(path) as handle:
        handle.write(header + yaml.safe_dump(best_config(trial), sort_keys=False, allow_unicode=True))
    return path


def test_once(folder: Path, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Evaluate the best trial's model on test, once: later calls for the same trial read ``best_test.json``.

    Returns:
        ``{"trial", "run", "dev", "split", "base", "fine_tuned", "significance", "seen_unseen", "earlier"}``.

    Raises:
        embedtune.errors.DataError: if the run's data can no longer be read.
    """
    path = folder / BEST_TEST_FILE
    earlier: list[int] = []
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("trial") == trial.number:
            return stored
        earlier = [*stored.get("earlier", []), stored["trial"]]
    record, per_query = _evaluate_on_test(Path(trial.user_attrs[RUN_ATTR]), best_config(trial))
    write_json_atomic(folder / BEST_PER_QUERY_FILE, {"trial": trial.number, **per_query})
    record = {"trial": trial.number, "dev": trial.value, **record, "earlier": earlier}
    write_json_atomic(path, record)
    return record


def _evaluate_on_test(run: Path, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    config = config_from_dict(settings)
    data = fit_data_to_loss(config.loss, prepare_data(config.data))
    final = FinalEvaluation(config, data.report, [])
    primary = config.train.primary_metric.lower()
    logger.info("Evaluating the best trial (%s) on %s, once", run.name, data.report.name)
    base = final.evaluate(load_base_model(config), "base")
    # the trial's saved model/: its run left its corpus embeddings in the shared cache (its final evaluation)
    tuned = final.evaluate(SentenceTransformer(str(run / MODEL_DIR)), "fine-tuned", final.cache)
    seen = seen_queries(data.report, training_positives(data.train_examples))
    figures = {
        "run": str(run),
        "split": data.report.name,
        "split_role": data.report_role,
        "base": base.report,
        "fine_tuned": tuned.report,
        "significance": final.significance(base, tuned),
        "seen_unseen": split_comparison(base.per_query, tuned.per_query, seen, primary),
    }
    return figures, per_query_record(data.report.name, base, tuned, seen)
