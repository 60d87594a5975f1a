"""``embedtune tune show STUDY``: the trials table, the best configuration, its test figures and the study's figures.

Figures (PNG, in the study folder): the optimisation history (dev value per trial and the best so far) and the
parameter importances (Optuna's fANOVA evaluator; needs two finished trials that differ).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import optuna

from embedtune.config import ConfigError
from embedtune.runs.text import format_duration, format_table
from embedtune.tuning import best
from embedtune.tuning.objective import RUN_ATTR, SHIPS_ATTR
from embedtune.tuning.study import storage_url, study_folder

logger = logging.getLogger(__name__)

HISTORY_FIGURE, IMPORTANCE_FIGURE = "optimization_history.png", "param_importances.png"


def load_study(runs_dir: str | Path, name: str, storage: str | None = None) -> optuna.Study:
    """Open an existing study.

    Raises:
        ConfigError: when no study of that name is in the storage (naming where it looked).
    """
    if storage is None and not (study_folder(runs_dir, name)).exists():
        raise ConfigError(f"study {name!r}: no folder {study_folder(runs_dir, name)} (give --runs-dir or --storage)")
    url = storage_url(runs_dir, name, storage)
    try:
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        raise ConfigError(f"study {name!r}: not found in {url}") from None


def trials_table(study: optuna.Study) -> str:
    """One line per trial: number, state, dev value, what its run ships, duration, run folder, sampled settings."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        duration = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        value = trial.value if trial.value is not None else _last_intermediate(trial)
        rows.append(
            [
                str(trial.number),
                trial.state.name.lower(),
                "-" if value is None else f"{value:.4f}",
                str(trial.user_attrs.get(SHIPS_ATTR, "-")),
                format_duration(duration),
                Path(trial.user_attrs.get(RUN_ATTR, "-")).name,
                " ".join(f"{key}={_short(value)}" for key, value in trial.params.items()),
            ]
        )
    if not rows:
        return "No trials yet."
    return format_table(["TRIAL", "STATE", "DEV", "SHIPS", "TIME", "RUN", "SETTINGS"], rows)


def describe_best(winner: optuna.trial.FrozenTrial, config_file: Path) -> str:
    """Return a line naming the best trial, its dev value and config file; and a second when its run ships the base."""
    line = f"Best: trial {winner.number}, dev {winner.value:.4f}; configuration: {config_file}"
    if best.ships_fine_tuned(winner):
        return line
    return line + "\nNo trial beat the base model on dev: the best trial's run, like best.yaml, ships the base model"


def _last_intermediate(trial: optuna.trial.FrozenTrial) -> float | None:
    values = trial.intermediate_values
    return values[max(values)] if values else None


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_figures(study: optuna.Study, folder: Path) -> list[Path]:
    """Write the optimisation history and, when they can be computed, the parameter importances as PNGs.

    Returns:
        The files written.
    """
    import matplotlib  # heavy: only when figures are drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib, as above
    from optuna.visualization import matplotlib as optuna_plots  # matplotlib, as above

    written = []
    plots = ((HISTORY_FIGURE, optuna_plots.plot_optimization_history), (IMPORTANCE_FIGURE, _importances))
    for name, plot in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study)
        except (ValueError, RuntimeError) as error:
            logger.info("No %s: %s", name, error)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.savefig(folder / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(folder / name)
    return written


def _importances(study: optuna.Study) -> Any:
    from optuna.visualization import matplotlib as optuna_plots  # matplotlib: only when figures are drawn

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        raise ValueError("parameter importances need two complete trials")
    return optuna_plots.plot_param_importances(study)


def show_study(runs_dir: str | Path, name: str, storage: str | None = None) -> str:
    """Render study ``name``: trials, best trial and configuration file, its test figures; write the figures.

    Raises:
        ConfigError: when the study does not exist.
    """
    study = load_study(runs_dir, name, storage)
    folder = study_folder(runs_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"Study {name} ({len(study.trials)} trials)", trials_table(study)]
    winner = best.best_trial(study)
    if winner is None:
        return "\n".join([*lines, "No complete trial yet."])
    path = best.write_best_config(folder, winner)
    lines.append(describe_best(winner, path))
    test_file = folder / best.BEST_TEST_FILE
    if test_file.exists():
        test = json.loads(test_file.read_text(encoding="utf-8"))
        lines.append(describe_test(test))
    else:
        lines.append("Test: not evaluated yet (`embedtune tune` evaluates the best trial once when it stops)")
    figures = write_figures(study, folder)
    lines += [f"Figures: {', '.join(str(path) for path in figures)}" if figures else "Figures: none yet"]
    return "\n".join(lines)


def describe_test(test: dict[str, Any]) -> str:
    """One paragraph for :func:`embedtune.tuning.best.test_once`'s figures."""
    primary = test["significance"].get("metric", "ndcg@10") if isinstance(test.get("significance"), dict) else None
    primary = primary or "ndcg@10"
    base, tuned = test["base"].get(primary), test["fine_tuned"].get(primary)
    lines = [
        f"Test ({test['split']}, trial {test['trial']}, evaluated once): {primary} base {base:.4f} -> "
        f"best trial {tuned:.4f} ({tuned - base:+.4f})",
        f"  {test['seen_unseen']['verdict']}",
    ]
    if test.get("earlier"):
        lines.append(f"  test was also evaluated for earlier best trials {test['earlier']} (the study resumed)")
    return "\n".join(lines)
