"""One trial of ``embedtune tune``: an ordinary run with the trial's settings, scored on dev only, pruned early.

The trial's run reports dev, never test (``eval.report_test: false``), and its value is the whole-corpus dev figure
of the candidate the run's selection rule picked (best checkpoint, or its WiSE-FT mix), the same kind of figure the
pruner is fed during training. Whether the run ships that candidate or the base model (when it did not beat the base
significantly) is kept beside it (:data:`SHIPS_ATTR`): a value fixed at the base model's figure whenever no trial beats
the base would leave the sampler nothing to learn from. Each dev evaluation during training goes to the study's
pruner; a pruned trial stops training, then finishes its run folder like any run, so nothing a trial made is
half-written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from transformers import TrainerCallback

from embedtune.config import ExperimentConfig, config_from_dict
from embedtune.config.files import apply_overrides
from embedtune.runs import find_runs, load_run
from embedtune.training.pipeline import run_training
from embedtune.training.trainer_setup import extra_callbacks
from embedtune.tuning.feature_space import split_values, write_trial_weights
from embedtune.tuning.space import Param, format_value
from embedtune.tuning.study import RESUME_OF_ATTR, claim, study_folder

logger = logging.getLogger(__name__)

RUN_ATTR = "run"
SHIPS_ATTR = "ships"
"""Trial attribute: what the trial's run ships, :data:`~embedtune.runs.CHOSEN_FINE_TUNED` or ``CHOSEN_BASE``."""


class DevReporter(TrainerCallback):
    """Report each dev evaluation of a run to an Optuna trial and stop training when the pruner says so.

    The Optuna step of a report is the evaluation's number (1 for the first after training started, counted over the
    run's whole history, so a resumed run goes on counting), not the optimiser step: trials with other batch sizes or
    epochs are then compared after as many evaluations. The evaluation before training (the base model's, the same
    in every trial) is not reported.

    Args:
        trial: The trial the run belongs to.
        primary: The primary metric (``ndcg@10``); the trainer logs it as ``eval_dev_<metric>``.
    """

    def __init__(self, trial: optuna.Trial, primary: str) -> None:
        self.trial = trial
        self.key = f"eval_dev_{primary.lower()}"
        self.pruned_at: int | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        """Report the dev figure of this evaluation; ask the pruner whether to go on."""
        if not metrics or self.key not in metrics or state.global_step == 0:
            return
        steps = {entry.get("step", 0) for entry in state.log_history if self.key in entry} | {state.global_step}
        self.trial.report(float(metrics[self.key]), len(steps - {0}))
        if self.trial.should_prune():
            self.pruned_at = state.global_step
            control.should_training_stop = True


def trial_config(base: dict[str, Any], study: str, number: int, values: dict[str, Any]) -> ExperimentConfig:
    """Return the configuration of trial ``number``: ``base`` with the sampled ``values``, named ``<study>-t<number>``.

    Feature weights among ``values`` (``feature_weights.<feature>``) go into the trial's own weight config, written
    in the study's folder (:func:`embedtune.tuning.feature_space.write_trial_weights`).

    Raises:
        ConfigError: for a value the configuration refuses (the space is checked before a study starts).
    """
    settings, weights = split_values(values)
    overrides = [f"{key}={format_value(value)}" for key, value in settings.items()]
    if weights:
        config = config_from_dict(base)
        folder = study_folder(config.runs_dir, study)
        path = write_trial_weights(config.data.feature_weights, weights, folder, number)
        overrides.append(f"data.feature_weights={path}")
    overrides += [f"name={study}-t{number}", f"study={study}", "eval.report_test=false"]
    return config_from_dict(apply_overrides(base, overrides))


def trial_run(runs_dir: str | Path, study: str, number: int) -> Path | None:
    """Return the run folder of trial ``number`` of ``study`` (the newest when several), or ``None``."""
    name = f"{study}-t{number}"
    matches = [
        run.path
        for run in find_runs(runs_dir)
        if run.record is not None and run.record.config.get("study") == study and run.name == name
    ]
    return max(matches, default=None)


def run_trial(trial: optuna.Trial, base: dict[str, Any], space: list[Param], study: str) -> float:
    """Run one trial and return its dev value: the selected candidate's, whether or not the run ships it.

    A trial queued to resume a dead one (``resume_of``) continues that trial's run folder when it is unfinished, or
    takes its figures when it finished.

    Raises:
        optuna.TrialPruned: after the run finished, when the pruner stopped its training.
        embedtune.training.pipeline.RunFailedError: when the run fails (the study goes on with the next trial).
    """
    values = {param.key: param.suggest(trial) for param in space}
    claim(trial)
    config = trial_config(base, study, trial.number, values)
    reporter = DevReporter(trial, config.train.primary_metric)
    earlier = trial.user_attrs.get(RESUME_OF_ATTR)
    folder = trial_run(config.runs_dir, study, earlier) if earlier is not None else None
    if folder is not None and load_run(folder).status == "finished":
        metrics = load_run(folder).metrics
        logger.info("Trial %d takes the figures of %s (trial %d finished it)", trial.number, folder, earlier)
    else:
        if folder is not None:
            logger.info("Trial %d resumes %s (trial %d)", trial.number, folder, earlier)
            config = config_from_dict(load_run(folder).record.config)
        with extra_callbacks(reporter):
            result = run_training(config, resume=folder)
        folder, metrics = result.folder, result.metrics
    trial.set_user_attr(RUN_ATTR, str(folder))
    trial.set_user_attr(SHIPS_ATTR, metrics.selection.chosen)
    value = metrics.selection.best_dev
    if reporter.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned at step {reporter.pruned_at} (dev {config.train.primary_metric})")
    return value
