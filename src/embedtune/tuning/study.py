"""Where a study lives: its folder under the runs folder, its Optuna study in a database, its dead trials recovered.

A study ``NAME`` has the folder ``<runs_dir>/studies/NAME/`` (``study.db``, the SQLite database by default;
``best.yaml``, ``best_test.json``, the figures) and one run folder per trial in ``<runs_dir>`` itself, named
``<timestamp>-NAME-t<trial number>``, whose configuration records ``study: NAME``. The Optuna study may live in any
database SQLAlchemy reaches (``--storage``); several processes (or machines) then work on one study at once, which
is Optuna's documented distributed mode.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from embedtune.config import ConfigError
from embedtune.tuning.space import Param

logger = logging.getLogger(__name__)

STUDIES_DIR = "studies"
DB_FILE = "study.db"
BASE_CONFIG_ATTR = "base_config"
SPACE_ATTR = "space"
RESUME_OF_ATTR = "resume_of"
HOST_ATTR, PID_ATTR = "host", "pid"
OPEN_ATTEMPTS = 5
PRUNE_AFTER_TRIALS = 5
"""Trials that finish before the pruner stops any."""


def study_folder(runs_dir: str | Path, name: str) -> Path:
    """Return the folder of study ``name``: ``<runs_dir>/studies/<name>``."""
    return Path(runs_dir) / STUDIES_DIR / name


def storage_url(runs_dir: str | Path, name: str, storage: str | None) -> str:
    """Return the study's database URL: ``storage`` when given, else SQLite in the study's folder (created here)."""
    if storage is not None:
        return storage
    folder = study_folder(runs_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / DB_FILE}"


def open_study(name: str, url: str, seed: int) -> optuna.Study:
    """Create the study ``name`` in ``url``, or load it when it exists (a resumed or a parallel study).

    The sampler is TPE seeded with ``seed`` (arXiv:2304.11127 describes Optuna's TPE) in the process that creates
    the study, so a study run by one process is reproducible; a process that finds the study existing (a resumed
    study, or another worker) draws from a fresh random stream, or it would repeat the first process's trials (TPE's
    first 10 trials are random draws). The pruner is the median
    pruner over the dev evaluations the trainer reports (numbered 1, 2, ... by
    :class:`~embedtune.tuning.objective.DevReporter`), patient: once :data:`PRUNE_AFTER_TRIALS` trials have finished,
    a trial is stopped at its second evaluation or later when it is below the median of the finished trials after as
    many evaluations and below its own best evaluation before. (Pruning at the first evaluation, with two
    finished trials, stopped 33 of 37 head-mode trials on SciFact, most of them at epoch 1 of a warm-up.)

    Raises:
        ConfigError: if the storage cannot be opened (naming the URL).
    """
    sampler = optuna.samplers.TPESampler(seed=seed)
    median = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=2, n_min_trials=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # PatientPruner, stable since 2.8
        pruner = optuna.pruners.PatientPruner(median, patience=0)  # 0: prune only below its own best
    for attempt in range(OPEN_ATTEMPTS):  # processes starting together race to create the schema and the study
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
            try:
                return optuna.create_study(
                    study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction="maximize"
                )
            except optuna.exceptions.DuplicatedStudyError:
                sampler.reseed_rng()
                return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        except Exception as error:  # noqa: BLE001 - SQLAlchemy raises many types for a bad URL or a lost race
            if attempt == OPEN_ATTEMPTS - 1:
                raise ConfigError(f"--storage {url}: cannot open the study database: {error}") from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLite: wait for a lock held by another process instead of failing at once."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def check_same_study(study: optuna.Study, base: dict[str, Any], space: list[Param]) -> None:
    """Record the study's base configuration and space on creation; on reopening, refuse different ones.

    Raises:
        ConfigError: when the study exists with another configuration or space (another study name is needed).
    """
    config, params = json.dumps(base, sort_keys=True), json.dumps([p.to_dict() | {"key": p.key} for p in space])
    stored = study.user_attrs
    if BASE_CONFIG_ATTR not in stored:
        study.set_user_attr(BASE_CONFIG_ATTR, config)
        study.set_user_attr(SPACE_ATTR, params)
        return
    for attr, mine, what in ((BASE_CONFIG_ATTR, config, "configuration"), (SPACE_ATTR, params, "search space")):
        if stored[attr] != mine:
            raise ConfigError(
                f"--study {study.study_name}: this study was started with another {what}; resume it with the same "
                "--config, --set and --space, or give a new --study name"
            )


def claim(trial: optuna.Trial) -> None:
    """Record which process runs ``trial``, so that a later ``tune`` on this host can tell it died."""
    trial.set_user_attr(HOST_ATTR, socket.gethostname())
    trial.set_user_attr(PID_ATTR, os.getpid())


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fail the trials left running by a process of this host that is gone, and queue each again to resume.

    A killed ``tune`` leaves its trial ``RUNNING`` in the database and its run folder unfinished. Each such trial is
    marked failed and its parameters are queued with ``resume_of`` = its number, so the next trial continues its run
    folder (``embedtune train --resume``) instead of starting over. Trials of other hosts are left alone.

    Returns:
        The numbers of the trials recovered.
    """
    recovered = []
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get(HOST_ATTR) != host or _alive(attrs.get(PID_ATTR)):
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={RESUME_OF_ATTR: trial.number})
        logger.warning("Trial %d was left running by a process that is gone: queued to resume", trial.number)
        recovered.append(trial.number)
    return recovered


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # unknown process: leave the trial alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def finished_durations(study: optuna.Study) -> list[float]:
    """Wall seconds of the study's complete and pruned trials, a resumed trial's left out.

    A trial that resumed a dead one (``resume_of``) lasted only the remainder of its run: counting it would make the
    next trial look shorter than it will be (see :meth:`~embedtune.tuning.budget.Budget.fits`).
    """
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        for trial in study.get_trials(deepcopy=False, states=states)
        if trial.datetime_complete is not None
        and trial.datetime_start is not None
        and RESUME_OF_ATTR not in trial.user_attrs
    ]
