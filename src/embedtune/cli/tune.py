"""``embedtune tune``: search a recipe within a wall-time budget on dev only; ``embedtune tune show STUDY``."""

from __future__ import annotations

import argparse

from embedtune.config.files import apply_overrides, load_config_file

_FLAG_SETTINGS = {"data": "data.path", "train_file": "data.train_file", "model": "model.name_or_path"}


def add_tune_command(commands: argparse._SubParsersAction) -> None:
    """Register ``embedtune tune`` and ``embedtune tune show``."""
    tune = commands.add_parser(
        "tune",
        help="Search learning rate, epochs, negatives, scale, LoRA or head settings within a time budget (Optuna).",
        description="Run trials of a study (Optuna's TPE sampler, median pruner on the dev evaluations) until the "
        "wall-time budget would not hold another trial. Each trial is an ordinary run folder named <study>-t<n> "
        "that is scored on dev only (the run's selection rule) and never evaluates test. When the study stops, the "
        "best trial is evaluated on test once, beside the base model, and its configuration is written to "
        "runs/studies/<study>/best.yaml (embedtune train --config reproduces it). The study lives in SQLite in "
        "that folder (or any --storage URL): run the same command again to resume it, or in several processes at "
        "once to share it. Default search space per train.mode: see docs/recipes.md (Tuning); --space replaces it.",
    )
    tune.add_argument("--config", help="YAML or JSON config file: every trial's starting settings.")
    tune.add_argument("--data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/).")
    tune.add_argument("--train-file", help="JSONL training file.")
    tune.add_argument("--model", help="Base model folder or name.")
    tune.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Any setting of every trial; the default space then leaves it out (a --space that varies it is refused).",
    )
    tune.add_argument("--budget", default="20m", help="Wall time this process may spend, e.g. 90s, 20m, 2h (20m).")
    tune.add_argument("--trials", type=int, help="Most trials this process runs (default: as the budget allows).")
    tune.add_argument("--space", help="YAML search space: setting: {low, high[, log, type]} or {choices: [...]}.")
    tune.add_argument("--study", default="study", help="Study name (default study); the same name resumes it.")
    tune.add_argument("--storage", help="SQLAlchemy URL of the study database (default SQLite in the study folder).")
    tune.add_argument("--seed", type=int, help="Sampler seed (default train.seed).")
    tune.set_defaults(handler=run_tune)
    actions = tune.add_subparsers(dest="tune_action", required=False)
    show = actions.add_parser("show", help="Trials, best configuration, its test figures and the study's figures.")
    show.add_argument("name", help="Study name.")
    show.add_argument("--runs-dir", default="runs", help="Folder of run folders (default runs).")
    show.add_argument("--storage", dest="show_storage", help="SQLAlchemy URL of the study database.")


def study_settings(args: argparse.Namespace) -> dict:
    """Return the nested settings every trial starts from: the config file, then the flags, then ``--set``."""
    base = load_config_file(args.config) if args.config is not None else {}
    flags = [f"{setting}={getattr(args, flag)}" for flag, setting in _FLAG_SETTINGS.items() if getattr(args, flag)]
    return apply_overrides(base, flags + args.set)


def fixed_settings(args: argparse.Namespace) -> tuple[str, ...]:
    """Return the setting keys given by a flag or ``--set``: the default search space leaves them as given."""
    flags = [setting for flag, setting in _FLAG_SETTINGS.items() if getattr(args, flag)]
    return tuple(dict.fromkeys(flags + [item.partition("=")[0].strip() for item in args.set]))


def run_tune(args: argparse.Namespace) -> int:
    """Run the study and print the best trial, its configuration file and its test figures; returns the exit code."""
    if args.tune_action == "show":
        return run_tune_show(args)
    # imports torch and Optuna: only when the command runs, so `embedtune --help` starts fast
    from embedtune.tuning.budget import parse_duration
    from embedtune.tuning.runner import TuneRequest, run_study
    from embedtune.tuning.show import describe_best, describe_test, trials_table
    from embedtune.tuning.space import load_space

    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials: must be at least 1, got {args.trials}")
    request = TuneRequest(
        base=study_settings(args),
        budget_s=parse_duration(args.budget),
        study=args.study,
        space=load_space(args.space) if args.space else [],
        storage=args.storage,
        max_trials=args.trials,
        seed=args.seed,
        space_file=args.space,
        fixed=fixed_settings(args),
    )
    outcome = run_study(request)
    print(trials_table(outcome.study))
    print(f"Study folder: {outcome.folder} ({len(outcome.ran)} trials run now)")
    if outcome.best is None:
        print("No trial finished.")
        return 1
    print(describe_best(outcome.best, outcome.best_config))
    print(describe_test(outcome.test))
    return 0


def run_tune_show(args: argparse.Namespace) -> int:
    """Print a study; returns the exit code."""
    # imports Optuna and torch: only when the command runs
    from embedtune.tuning.show import show_study

    print(show_study(args.runs_dir, args.name, args.show_storage))
    return 0
