"""``embedtune tune``: trials within a wall-time budget, then the best trial's configuration and its one test figure.

Flow: check the configuration and every value of the space (before any model loads or any folder exists); open or
create the study; recover trials a killed ``tune`` of this host left running; then, while the budget holds another
trial of the length of those finished (and ``--trials`` is not reached), ask the sampler for settings, train a run
with them (:mod:`embedtune.tuning.objective`), tell the study its dev value. At the end: ``best.yaml`` and the best
trial evaluated on test once (:mod:`embedtune.tuning.best`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from embedtune.config import ConfigError, config_from_dict
from embedtune.data.prepare import prepare_data
from embedtune.model_paths import check_model_available
from embedtune.training.mode import check_mode_libraries
from embedtune.training.pipeline import RunFailedError
from embedtune.tuning import best, objective, study
from embedtune.tuning.budget import Budget
from embedtune.tuning.feature_space import check_feature_params, default_feature_params
from embedtune.tuning.space import Param, check_space, default_space

logger = logging.getLogger(__name__)


@dataclass
class TuneRequest:
    """What ``embedtune tune`` was asked.

    Attributes:
        base: Nested settings of the study (``--config`` with ``--set`` applied), each trial's starting point.
        budget_s: Wall seconds this process may spend; no trial starts that would not end within it.
        study: The study name (trial runs are ``<study>-t<n>``).
        space: The search space; empty means the default space of the configured ``train.mode``.
        storage: A SQLAlchemy database URL, or ``None`` for SQLite in the study's folder.
        max_trials: Most trials this process runs, or ``None``.
        seed: Seed of the sampler (``train.seed`` by default; each trial trains with ``train.seed``).
        space_file: Where ``space`` was read, for error messages.
        fixed: Setting keys the user gave explicitly (a flag or ``--set``): the default space does not search them,
            and an explicit ``space`` that varies one is refused.
    """

    base: dict[str, Any]
    budget_s: float
    study: str
    space: list[Param] = field(default_factory=list)
    storage: str | None = None
    max_trials: int | None = None
    seed: int | None = None
    space_file: str | None = None
    fixed: tuple[str, ...] = ()


@dataclass
class TuneOutcome:
    """What a ``tune`` left: the study, its folder, the trials this process ran, the best trial, its test figures."""

    study: optuna.Study
    folder: Path
    ran: list[int]
    best: optuna.trial.FrozenTrial | None
    best_config: Path | None
    test: dict[str, Any] | None


def run_study(request: TuneRequest) -> TuneOutcome:
    """Run trials of ``request.study`` within the budget, then write the best configuration and evaluate it on test.

    Raises:
        ConfigError: for a bad setting or space value, a study started with another configuration, or a storage
            that cannot be opened; before any trial.
        embedtune.errors.DataError: for malformed data, before any trial.
    """
    config = config_from_dict({**request.base, "study": request.study})  # a bad --study stops before its folder
    where = request.space_file or f"default search space of train.mode {config.train.mode}"
    space = request.space or _without_fixed(default_space(config) + default_feature_params(config), request.fixed)
    clash = [param.key for param in space if param.key in request.fixed]
    if clash:
        raise ConfigError(f"{where}: {clash[0]} is searched, but --set (or a flag) fixes it; drop one of the two")
    check_space(space, request.base, where)
    check_feature_params(space, config, where)
    check_mode_libraries(config)
    prepare_data(config.data)  # bad data or a missing model stops here, before any folder or model loads
    check_model_available(config.model.name_or_path)
    budget = Budget(request.budget_s)
    url = study.storage_url(config.runs_dir, request.study, request.storage)
    optuna_study = study.open_study(request.study, url, config.train.seed if request.seed is None else request.seed)
    study.check_same_study(optuna_study, request.base, space)
    study.recover_dead_trials(optuna_study)
    ran = _run_trials(optuna_study, request, space, budget)
    folder = study.study_folder(config.runs_dir, request.study)
    folder.mkdir(parents=True, exist_ok=True)
    winner = best.best_trial(optuna_study)
    if winner is None:
        logger.warning("No trial finished: no best configuration and no test figures")
        return TuneOutcome(optuna_study, folder, ran, None, None, None)
    return TuneOutcome(
        optuna_study, folder, ran, winner, best.write_best_config(folder, winner), best.test_once(folder, winner)
    )


def _without_fixed(space: list[Param], fixed: tuple[str, ...]) -> list[Param]:
    """Drop the parameters the user fixed from a default space, saying so."""
    kept = [param for param in space if param.key not in fixed]
    if len(kept) < len(space):
        pinned = ", ".join(param.key for param in space if param.key in fixed)
        logger.info("Not searched, fixed by --set or a flag: %s", pinned)
    return kept


def _run_trials(optuna_study: optuna.Study, request: TuneRequest, space: list[Param], budget: Budget) -> list[int]:
    ran: list[int] = []
    while request.max_trials is None or len(ran) < request.max_trials:
        durations = study.finished_durations(optuna_study)
        if not budget.fits(durations):
            expected = budget.expected(durations)
            logger.info(
                "Budget: %.0f s left, a trial takes about %s s: no more trials",
                max(budget.left, 0),
                "?" if expected is None else f"{expected:.0f}",
            )
            break
        trial = optuna_study.ask()
        ran.append(trial.number)
        logger.info("Trial %d of study %s (%.0f s of budget left)", trial.number, request.study, budget.left)
        _run_one(optuna_study, trial, request, space)
    return ran


def _run_one(optuna_study: optuna.Study, trial: optuna.Trial, request: TuneRequest, space: list[Param]) -> None:
    try:
        value = objective.run_trial(trial, request.base, space, request.study)
    except optuna.TrialPruned as pruned:
        logger.info("Trial %d %s", trial.number, pruned)
        optuna_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    except RunFailedError as error:
        logger.warning("Trial %d failed, the study goes on: %s", trial.number, error)
        optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)
    except BaseException:
        optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)
        optuna_study.enqueue_trial(trial.params, user_attrs={study.RESUME_OF_ATTR: trial.number})
        raise  # Ctrl-C or a bug: the trial is queued to resume its run folder when the study is resumed
    else:
        optuna_study.tell(trial, value)
        logger.info("Trial %d: dev %.4f", trial.number, value)
