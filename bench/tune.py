"""Tuning benchmark: ``embedtune tune`` on SciFact against the hand-set recipe it would replace.

Each part trains the shipped (hand-set) recipe as an ordinary run, then runs a study from the same configuration
within a wall-time budget (trials see dev only), and prints: the shipped recipe's dev figure beside the best trial's
(both the dev figure of the model the run ships, under the same selection rule), then test once for each, overall
and on seen / unseen queries (relevant documents among training positives or not), with the paired randomisation
test of the tuned recipe against the shipped one. Needs ``../shared/datasets/scifact``::

    .venv/bin/python bench/tune.py head --budget 10m    # recipe 1 (frozen encoder + head) vs a head-mode study
    .venv/bin/python bench/tune.py lora --budget 30m    # LoRA at the default lr vs a LoRA study (one epoch each)
    .venv/bin/python bench/tune.py full --budget 30m    # the default recipe at one epoch vs a full-mode study

``--set KEY=VALUE`` gives both sides a setting (e.g. ``--set train.seed=7``).

Parts:
* ``head``: examples/frozen-head-feature-weights.yaml (mines its training file first when missing) and a study over
  the default head space (with the feature weights, as the data gives ``neg_features``).
* ``full``: examples/scifact.yaml at one epoch (its learning rate 2e-5) and a study over the default full space
  with the epochs held at one, no interpolation, the batch size of the config (:data:`FULL_SPACE`).
* ``lora``: examples/scifact.yaml with ``train.mode=lora`` at LoRA's default learning rate (``Mode.learning_rate``,
  2e-4 since the 2e-5 of the config file barely moves an adapter), one epoch, and a
  study over the default LoRA space with the epochs held at one and no interpolation (:data:`LORA_SPACE`), so a
  trial fits a 2-core CPU's budget.

Every figure printed is measured here; nothing is read from earlier benchmarks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from embedtune.config.modes import TRAIN_MODES
from recipes import RECIPES  # bench/recipes.py: this folder is on sys.path when a bench script runs

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
PYTHON = sys.executable
PRIMARY = "ndcg@10"

MINE = RECIPES["feature-weights"][0]
"""Recipe 1's mining command (bench/recipes.py), run when its training file is missing."""
LORA_SPACE = """\
train.learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}
lora.rank: {choices: [4, 8, 16, 32]}
lora.alpha: {choices: [8.0, 16.0, 32.0, 64.0]}
lora.dropout: {low: 0.0, high: 0.2}
"""
"""The default LoRA space without ``train.epochs`` and ``train.interpolation`` (held at one epoch, none)."""

FULL_SPACE = """\
train.learning_rate: {low: 5.0e-6, high: 2.0e-4, log: true}
train.warmup_ratio: {low: 0.0, high: 0.2}
loss.scale: {low: 10.0, high: 50.0}
loss.anchor_weight: {choices: [0.0, 0.5, 2.0]}
"""
"""The default full space without epochs, interpolation, batch size and negatives per row (the data has none)."""

PARTS = {
    "head": {"config": "examples/frozen-head-feature-weights.yaml", "settings": [], "space": None},
    "full": {
        "config": "examples/scifact.yaml",
        "settings": ["train.epochs=1", "train.interpolation=none"],
        "space": FULL_SPACE,
    },
    "lora": {
        "config": "examples/scifact.yaml",
        "settings": [
            "train.mode=lora",
            f"train.learning_rate={TRAIN_MODES['lora'].learning_rate}",
            "train.epochs=1",
            "train.interpolation=none",
        ],
        "space": LORA_SPACE,
    },
}


def embedtune(*args: str) -> float:
    """Run ``python -m embedtune ARGS`` in the project root; return its wall time in seconds (exit on failure)."""
    started = time.time()
    print("$ embedtune " + " ".join(args), flush=True)
    subprocess.run([PYTHON, "-m", "embedtune", *args], cwd=ROOT, check=True)
    return time.time() - started


def set_flags(*settings: str) -> list[str]:
    """Return ``--set`` flags for ``settings``."""
    return [part for setting in settings for part in ("--set", setting)]


def shipped(runs_dir: Path, part: str, extra: list[str]) -> tuple[Path, float]:
    """Train the part's hand-set recipe, with the ``extra`` settings, as a run; return its folder and seconds."""
    name = f"{part}-shipped"
    spec = PARTS[part]
    settings = set_flags(f"runs_dir={runs_dir}", f"name={name}", *spec["settings"], *extra)
    seconds = embedtune("-q", "train", "--config", spec["config"], *settings)
    (folder,) = [path for path in runs_dir.iterdir() if path.name.endswith(f"-{name}")]
    return folder, seconds


def tune(runs_dir: Path, part: str, budget: str, scratch: Path, extra: list[str]) -> tuple[Path, float]:
    """Run the part's study (with the ``extra`` settings) within ``budget``; return the study folder and seconds."""
    spec = PARTS[part]
    space: list[str] = []
    if spec["space"] is not None:
        (scratch / "space.yaml").write_text(spec["space"], encoding="utf-8")
        space = ["--space", str(scratch / "space.yaml")]
    study = f"{part}-bench"
    seconds = embedtune(
        "tune", "--config", spec["config"], "--budget", budget, "--study", study, *space,
        *set_flags(f"runs_dir={runs_dir}", *spec["settings"], *extra),
    )  # fmt: skip
    return runs_dir / "studies" / study, seconds


def primary(per_query: dict, model: str, ids: set[str] | None = None) -> dict[str, float]:
    """Return query id -> primary metric of ``model`` (``base`` or ``fine_tuned``) in a per-query record."""
    return {qid: scores[PRIMARY] for qid, scores in per_query[model].items() if ids is None or qid in ids}


def compare(shipped_run: Path, study: Path) -> dict:
    """Return the shipped recipe vs the best trial: dev, test overall / seen / unseen, the paired tests."""
    from embedtune.evaluation.significance import compare_per_query
    from embedtune.runs import CHOSEN_BASE, load_run

    run = load_run(shipped_run)
    selection = run.metrics.selection
    shipped_dev = selection.base_dev if selection.chosen == CHOSEN_BASE else selection.best_dev  # what it ships
    best = json.loads((study / "best_test.json").read_text(encoding="utf-8"))
    tuned = json.loads((study / "best_per_query.json").read_text(encoding="utf-8"))
    hand = json.loads((shipped_run / "per_query.json").read_text(encoding="utf-8"))
    seen = set(tuned.get("seen", []))
    groups = {"all": None, "seen": seen, "unseen": set(tuned["fine_tuned"]) - seen}
    rows = {}
    for group, ids in groups.items():
        base, a, b = primary(tuned, "base", ids), primary(hand, "fine_tuned", ids), primary(tuned, "fine_tuned", ids)
        if not b:
            continue  # e.g. no seen query when test holds new documents only (data.test_split_by=document)
        vs_shipped = compare_per_query(a, b, PRIMARY, labels=("shipped", "tuned")).to_dict()
        rows[group] = {
            "queries": len(b),
            "base": sum(base.values()) / len(base),
            "shipped": sum(a.values()) / len(a),
            "tuned": sum(b.values()) / len(b),
            "tuned_vs_shipped_delta": vs_shipped["mean_diff"],
            "tuned_vs_shipped_p": vs_shipped["p_permutation"],
        }
    return {
        "shipped_run": str(shipped_run),
        "shipped_dev": shipped_dev,
        "best_trial": best["trial"],
        "best_run": best["run"],
        "best_dev": best["dev"],
        "test": rows,
    }


def trials_summary(study: Path) -> dict:
    """Return how many trials ended in each state, what their runs ship, and the study's answer's parameters."""
    import optuna

    from embedtune.tuning.best import best_trial
    from embedtune.tuning.objective import SHIPS_ATTR

    loaded = optuna.load_study(study_name=study.name, storage=f"sqlite:///{study / 'study.db'}")
    states: dict[str, int] = {}
    ships: dict[str, int] = {}
    for trial in loaded.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
        if trial.state == optuna.trial.TrialState.COMPLETE:
            shipped = trial.user_attrs.get(SHIPS_ATTR, "unknown")
            ships[shipped] = ships.get(shipped, 0) + 1
    values = sorted((trial.value for trial in loaded.trials if trial.value is not None), reverse=True)
    return {"states": states, "ships": ships, "top_dev_values": values[:5], "best_params": best_trial(loaded).params}


def main() -> None:
    """Run the chosen parts and print their figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--budget", default="10m", help="Wall-time budget of the study (10m).")
    parser.add_argument("--runs-dir", type=Path, default=Path(tempfile.gettempdir()) / "tune-bench-runs")
    parser.add_argument("--shipped-run", type=Path, help="Reuse a finished run of the shipped recipe.")
    parser.add_argument("--out", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="A setting of both sides.")
    args = parser.parse_args()
    if not SCIFACT.exists():
        sys.exit(f"skipped: {SCIFACT} is missing (see the project README)")
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    figures: dict = {"part": args.part, "budget": args.budget, "settings": args.set}
    if args.part == "head" and not (ROOT / MINE[2]).exists():
        (ROOT / "recipe-data").mkdir(exist_ok=True)
        figures["mine_s"] = embedtune(*MINE)
    if args.shipped_run is None:
        args.shipped_run, figures["shipped_s"] = shipped(args.runs_dir, args.part, args.set)
    with tempfile.TemporaryDirectory() as scratch:
        study, figures["study_s"] = tune(args.runs_dir, args.part, args.budget, Path(scratch), args.set)
    figures.update(compare(args.shipped_run, study), **trials_summary(study))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
