"""`embedtune tune` end to end with the tiny model in head mode (trials of a few seconds)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from transformers import TrainerCallback

from embedtune.cli import main
from embedtune.config import ConfigError, build_config
from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
from embedtune.runs import find_runs, load_run
from embedtune.training.pipeline import run_training
from embedtune.training.trainer_setup import extra_callbacks
from embedtune.tuning import best
from embedtune.tuning.objective import RUN_ATTR, SHIPS_ATTR, DevReporter, run_trial
from embedtune.tuning.runner import TuneRequest, run_study
from embedtune.tuning.space import CATEGORICAL, FLOAT, Param
from embedtune.tuning.study import (
    RESUME_OF_ATTR,
    claim,
    finished_durations,
    open_study,
    recover_dead_trials,
    study_folder,
)

SPACE = [
    Param("train.head_learning_rate", FLOAT, 1e-2, 1e-1, log=True),
    Param("head.dim", CATEGORICAL, choices=(16, 32)),
]
TRAIN = {"mode": "head", "batch_size": "8", "epochs": "30", "eval_strategy": "steps", "eval_steps": "15"}  # 90 steps


def base_settings(model: Path, data: Path, runs: Path, *extra: str) -> dict:
    settings = {
        "model": {"name_or_path": str(model)},
        "data": {"path": str(data), "dev_fraction": "0.25"},
        "runs_dir": str(runs),
        "train": dict(TRAIN),
    }
    for item in extra:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        settings.setdefault(section, {})[name] = value
    return settings


@pytest.fixture()
def evaluated_queries(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The query ids of every whole-corpus evaluation, in order."""
    seen: list[set[str]] = []
    call = RetrievalEvaluator.__call__

    def recording_call(self, *args, **kwargs):
        seen.append(set(self.queries))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(RetrievalEvaluator, "__call__", recording_call)
    return seen


def test_trials_never_see_test_and_the_best_trial_is_tested_once(
    tiny_model_dir, noise_beir, tmp_path, evaluated_queries
):
    runs = tmp_path / "runs"
    request = TuneRequest(base_settings(tiny_model_dir, noise_beir, runs), 600, "s", SPACE, max_trials=3)
    test_ids = {line.split("\t")[0] for line in (noise_beir / "qrels" / "test.tsv").read_text().splitlines()[1:]}

    outcome = run_study(request)

    trials = outcome.study.get_trials()
    complete, pruned = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert [t.state for t in trials[:2]] == [complete, complete] and trials[2].state in (complete, pruned)
    for trial in trials:
        run = load_run(trial.user_attrs[RUN_ATTR])
        assert run.status == "finished" and run.config["study"] == "s" and run.name == f"s-t{trial.number}"
        assert run.metrics.report.role == "selection" and run.metrics.report.split == "dev"
        assert not set(json.loads((run.path / "per_query.json").read_text())["base"]) & test_ids
        selection = run.metrics.selection
        if trial.state == complete:
            assert trial.value == selection.best_dev and trial.user_attrs[SHIPS_ATTR] == selection.chosen
    test_evaluations = [ids for ids in evaluated_queries if ids & test_ids]
    assert len(test_evaluations) == 2  # base and the best trial, once each, after every trial
    assert evaluated_queries[-2:] == test_evaluations
    assert outcome.best == max(
        (t for t in trials if t.state == complete), key=lambda t: (t.user_attrs[SHIPS_ATTR] != "base", t.value)
    )
    stored = json.loads((study_folder(runs, "s") / best.BEST_TEST_FILE).read_text())
    assert stored["trial"] == outcome.best.number and stored["split"] == "test" and stored["split_role"] == "test"
    assert stored["fine_tuned"]["ndcg@10"] > stored["base"]["ndcg@10"]  # the noise set: a head learns to ignore noise
    assert set(stored["seen_unseen"]) >= {"seen", "unseen", "verdict"}
    per_query = json.loads((study_folder(runs, "s") / best.BEST_PER_QUERY_FILE).read_text())
    assert per_query["trial"] == outcome.best.number and set(per_query["fine_tuned"]) == test_ids
    mean = sum(scores["ndcg@10"] for scores in per_query["fine_tuned"].values()) / len(test_ids)
    assert mean == pytest.approx(stored["fine_tuned"]["ndcg@10"], abs=1e-6)

    again = best.test_once(study_folder(runs, "s"), outcome.best)
    assert again == stored and len([ids for ids in evaluated_queries if ids & test_ids]) == 2


def test_best_yaml_trains_the_best_trial_again(tiny_model_dir, noise_beir, tmp_path):
    runs = tmp_path / "runs"
    outcome = run_study(TuneRequest(base_settings(tiny_model_dir, noise_beir, runs), 600, "s", SPACE, max_trials=2))

    config = build_config(outcome.best_config)
    header = outcome.best_config.read_text(encoding="utf-8").splitlines()[0]
    assert f"reproduce from {Path.cwd()} with: embedtune train --config {outcome.best_config}" in header
    trial_run = load_run(outcome.best.user_attrs[RUN_ATTR])
    assert config.study is None and config.eval.report_test and config.name == "s-best"
    expected = {**trial_run.config, "name": "s-best", "study": None}
    expected["eval"] = {**expected["eval"], "report_test": True}
    assert config.to_dict() == expected

    again = run_training(config)
    assert again.metrics.report.split == "test"
    assert again.metrics.selection.best_dev == pytest.approx(trial_run.metrics.selection.best_dev, abs=1e-6)


def test_a_pruned_trial_stops_training_and_still_finishes_its_run(tiny_model_dir, noise_beir, tmp_path):
    base = base_settings(tiny_model_dir, noise_beir, tmp_path / "runs")
    pruner = optuna.pruners.ThresholdPruner(upper=-1.0, n_warmup_steps=2)  # any second dev evaluation prunes
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()

    with pytest.raises(optuna.TrialPruned):
        run_trial(trial, base, SPACE, "p")

    run = load_run(trial.user_attrs[RUN_ATTR])
    assert run.status == "finished"
    history = {entry["step"]: entry["ndcg@10"] for entry in run.metrics.dev_history}
    assert list(history) == [0, 15, 30]  # the base model, then two evaluations: the 90 steps were cut short
    assert trial_intermediate(study, trial) == {1: history[15], 2: history[30]}  # numbered by evaluation


def test_the_study_prunes_only_after_five_trials_from_the_second_evaluation_and_not_an_improving_trial(tmp_path):
    study = open_study("s", f"sqlite:///{tmp_path / 'study.db'}", seed=0)

    def finished_trial():
        trial = study.ask()
        for step, value in {1: 0.5, 2: 0.6, 3: 0.7}.items():
            trial.report(value, step)
        study.tell(trial, 0.7)

    for _ in range(4):
        finished_trial()
    assert not trial_prunes(study, {1: 0.1, 2: 0.05})  # four trials finished: too early to prune
    finished_trial()
    assert not trial_prunes(study, {1: 0.1})  # the first evaluation never prunes
    assert trial_prunes(study, {1: 0.1, 2: 0.05})  # below the median and worse than before
    assert not trial_prunes(study, {1: 0.1, 2: 0.2})  # below the median but improving


def trial_prunes(study: optuna.Study, values: dict[int, float]) -> bool:
    trial = study.ask()
    for step, value in values.items():
        trial.report(value, step)
    prunes = trial.should_prune()
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return prunes


def trial_intermediate(study: optuna.Study, trial: optuna.Trial) -> dict:
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study.trials[trial.number].intermediate_values


class InterruptAfterFirstCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def test_an_interrupted_study_resumes_the_trial_in_its_run_folder(tiny_model_dir, noise_beir, tmp_path):
    runs = tmp_path / "runs"
    request = TuneRequest(base_settings(tiny_model_dir, noise_beir, runs), 600, "s", SPACE, max_trials=1)
    with pytest.raises(KeyboardInterrupt), extra_callbacks(InterruptAfterFirstCheckpoint()):
        run_study(request)
    [interrupted] = find_runs(runs)
    assert interrupted.status == "interrupted" and (interrupted.path / "checkpoints" / "checkpoint-15").is_dir()

    outcome = run_study(request)

    first, second = outcome.study.get_trials()
    assert first.state == optuna.trial.TrialState.FAIL and second.state == optuna.trial.TrialState.COMPLETE
    assert second.user_attrs[RESUME_OF_ATTR] == 0 and second.params == first.params
    [resumed] = find_runs(runs)  # the same folder, finished; no second run
    assert resumed.path == interrupted.path and resumed.status == "finished"
    assert Path(second.user_attrs[RUN_ATTR]) == interrupted.path


def test_trials_left_running_by_a_dead_process_are_queued_again(tmp_path):
    study = open_study("dead", f"sqlite:///{tmp_path / 'study.db'}", seed=0)
    dead = study.ask()
    rate = dead.suggest_float("train.learning_rate", 1e-5, 1e-3)
    claim(dead)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead.set_user_attr("pid", finished.pid)
    alive = study.ask()
    claim(alive)
    alive.set_user_attr("pid", os.getppid())  # a live process of this host: left alone

    assert recover_dead_trials(study) == [dead.number]

    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    assert states[alive.number] == optuna.trial.TrialState.RUNNING
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1
    queued = study.ask()  # the queued trial comes first, with the dead trial's values
    assert queued.user_attrs[RESUME_OF_ATTR] == dead.number
    assert queued.suggest_float("train.learning_rate", 1e-5, 1e-3) == rate

    whole = study.ask()
    whole.suggest_float("train.learning_rate", 1e-5, 1e-3)
    study.tell(whole, 0.5)
    study.tell(queued, 0.4)  # the resumed trial: only the remainder of its run
    assert len(finished_durations(study)) == 1  # the budget's expectation counts whole trials only


def test_a_study_reopened_with_other_settings_is_refused(tiny_model_dir, noise_beir, tmp_path):
    runs = tmp_path / "runs"
    run_study(TuneRequest(base_settings(tiny_model_dir, noise_beir, runs), 600, "s", SPACE, max_trials=1))
    other = base_settings(tiny_model_dir, noise_beir, runs, "loss.scale=30")
    with pytest.raises(ConfigError, match="another configuration"):
        run_study(TuneRequest(other, 600, "s", SPACE, max_trials=1))
    with pytest.raises(ConfigError, match="another search space"):
        run_study(TuneRequest(base_settings(tiny_model_dir, noise_beir, runs), 600, "s", SPACE[:1], max_trials=1))


def test_two_processes_share_one_sqlite_study(tiny_model_dir, noise_beir, tmp_path):
    runs = tmp_path / "runs"
    space = tmp_path / "space.yaml"
    space.write_text("train.head_learning_rate: {low: 0.01, high: 0.1, log: true}\nhead.dim: {choices: [16, 32]}\n")
    command = [
        sys.executable,
        "-m",
        "embedtune",
        "-q",
        "tune",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(noise_beir),
    ]
    command += ["--set", f"runs_dir={runs}", "--set", "train.mode=head", "--set", "train.batch_size=8"]
    command += ["--set", "train.epochs=4", "--set", "data.dev_fraction=0.25", "--space", str(space)]
    command += ["--study", "shared", "--trials", "2", "--budget", "10m"]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs

    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{study_folder(runs, 'shared') / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    folders = {t.user_attrs[RUN_ATTR] for t in trials}
    assert len(folders) == 4 and {run.status for run in find_runs(runs)} == {"finished"}
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    assert len({t.params["train.head_learning_rate"] for t in trials}) == 4  # the second process does not repeat


def test_the_first_process_draws_are_seeded_and_a_resumed_process_draws_new_ones(tmp_path):
    def draws(url: str) -> list[float]:
        study = open_study("s", url, seed=3)
        values = []
        for _ in range(3):
            trial = study.ask()
            values.append(trial.suggest_float("x", 0.0, 1.0))
            study.tell(trial, values[-1])
        return values

    first = draws(f"sqlite:///{tmp_path / 'a.db'}")
    assert draws(f"sqlite:///{tmp_path / 'b.db'}") == first  # a new study: reproducible from the seed
    assert not set(draws(f"sqlite:///{tmp_path / 'a.db'}")) & set(first)  # resumed: not the same trials again


def test_bad_budget_or_space_stops_before_any_folder(tiny_model_dir, noise_beir, tmp_path, capsys):
    runs = tmp_path / "runs"
    common = ["tune", "--model", str(tiny_model_dir), "--data", str(noise_beir), "--set", f"runs_dir={runs}"]
    assert main([*common, "--budget", "soon"]) == 2
    assert "--budget" in capsys.readouterr().err
    space = tmp_path / "space.yaml"
    space.write_text("lora.rank: {low: 0, high: 8}\n")
    assert main([*common, "--space", str(space), "--set", "train.mode=lora"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(space) in error and "lora.rank = 0" in error
    assert main([*common, "--study", "../elsewhere"]) == 2
    assert capsys.readouterr().err.startswith("error: study: must not contain '/'")
    assert not runs.exists() and not (tmp_path / "elsewhere").exists()


def test_tune_show_lists_trials_best_test_and_writes_figures(tiny_model_dir, noise_beir, tmp_path, capsys):
    runs = tmp_path / "runs"
    run_study(TuneRequest(base_settings(tiny_model_dir, noise_beir, runs), 600, "s", SPACE, max_trials=3))
    capsys.readouterr()

    assert main(["tune", "show", "s", "--runs-dir", str(runs)]) == 0

    out = capsys.readouterr().out
    assert "TRIAL" in out and "s-t2" in out and "Best: trial" in out and "evaluated once" in out
    folder = study_folder(runs, "s")
    assert (folder / "optimization_history.png").stat().st_size > 0
    assert (folder / "param_importances.png").stat().st_size > 0
    assert main(["tune", "show", "missing", "--runs-dir", str(runs)]) == 2


def test_dev_reports_are_numbered_by_evaluation_over_a_resumed_runs_whole_history():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    reporter = DevReporter(trial, "nDCG@10")
    key = "eval_dev_ndcg@10"
    history = [{key: 0.1, "step": 0}, {key: 0.2, "step": 15}, {"loss": 1.0, "step": 20}, {key: 0.3, "step": 30}]
    control = SimpleNamespace(should_training_stop=False)

    reporter.on_evaluate(None, SimpleNamespace(global_step=0, log_history=history[:1]), control, metrics={key: 0.1})
    reporter.on_evaluate(None, SimpleNamespace(global_step=45, log_history=history), control, metrics={key: 0.4})

    assert trial_intermediate(study, trial) == {3: 0.4}  # the base model's (step 0) is not reported


def test_a_setting_given_with_set_is_not_searched_and_an_explicit_space_may_not_vary_it(
    tiny_model_dir, noise_beir, tmp_path, monkeypatch, capsys
):
    from embedtune.tuning import runner

    searched: list[list[str]] = []
    monkeypatch.setattr(
        runner,
        "_run_trials",
        lambda study, request, space, budget: searched.append([param.key for param in space]) or [],
    )
    runs = tmp_path / "runs"
    common = ["tune", "--model", str(tiny_model_dir), "--data", str(noise_beir), "--set", f"runs_dir={runs}"]
    common += ["--set", "train.mode=head"]
    assert main([*common, "--set", "train.epochs=1", "--study", "pinned"]) == 1  # no trial ran: exit 1
    assert main([*common, "--study", "free"]) == 1
    pinned, free = searched
    assert "train.epochs" in free and pinned == [key for key in free if key != "train.epochs"]

    space = tmp_path / "space.yaml"
    space.write_text("train.epochs: {low: 1, high: 3}\n")
    capsys.readouterr()
    assert main([*common, "--set", "train.epochs=1", "--space", str(space), "--study", "clash"]) == 2
    assert "train.epochs is searched, but --set (or a flag) fixes it" in capsys.readouterr().err
