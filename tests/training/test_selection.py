import pytest

from embedtune.evaluation.significance import compare_per_query
from embedtune.training.selection import SelectionRule, dev_history, select_model


def history(*values):
    return [{"step": 10 * i, "epoch": float(i), "ndcg@10": value} for i, value in enumerate(values)]


def test_best_fine_tuned_checkpoint_wins_when_it_beats_the_base():
    selection = select_model(history(0.50, 0.52, 0.55, 0.55), "ndcg@10")
    assert selection.chosen == "fine_tuned" and selection.step == 20  # the earliest of the tied best
    assert selection.delta == pytest.approx(0.05)
    assert "0.5000 -> 0.5500" in selection.verdict and "step 20" in selection.verdict


@pytest.mark.parametrize("values", [(0.50, 0.50, 0.49), (0.50, 0.40, 0.496)])
def test_base_is_kept_on_a_tie_or_a_loss(values):
    selection = select_model(history(*values), "ndcg@10")
    assert selection.chosen == "base" and selection.step is None
    assert selection.verdict == (
        f"fine-tuning did not beat the base model on dev: best Δ nDCG@10 {max(values[1:]) - values[0]:+.4f}; "
        "model/ is the base model (rule: Δ > 0 on the dev pool)"
    )


def test_selection_needs_the_untouched_model_and_a_checkpoint():
    with pytest.raises(ValueError, match="step 0"):
        select_model(history(0.5, 0.6)[1:], "ndcg@10")
    with pytest.raises(ValueError, match="fine-tuned"):
        select_model(history(0.5), "ndcg@10")


def test_dev_history_reads_the_trainers_dev_entries_only():
    log = [
        {"step": 0, "epoch": 0, "eval_dev_ndcg@10": 0.4, "eval_dev_mrr@10": 0.3, "eval_runtime": 1.0},
        {"step": 5, "epoch": 0.5, "loss": 1.2},
        {"step": 10, "epoch": 1.0, "eval_dev_ndcg@10": 0.5, "eval_dev_mrr@10": 0.35},
    ]
    assert dev_history(log, "ndcg@10") == [
        {"step": 0, "epoch": 0.0, "ndcg@10": 0.4, "mrr@10": 0.3},
        {"step": 10, "epoch": 1.0, "ndcg@10": 0.5, "mrr@10": 0.35},
    ]


def test_dev_history_orders_metrics_as_configured_also_from_a_resumed_runs_sorted_log():
    restored = {"step": 3, "epoch": 1.0, "eval_dev_map@100": 0.2, "eval_dev_mrr@10": 0.3, "eval_dev_ndcg@10": 0.4}
    live = {"step": 6, "epoch": 2.0, "eval_dev_ndcg@10": 0.5, "eval_dev_map@100": 0.25, "eval_dev_mrr@10": 0.35}
    restored["eval_dev_ndcg@10@64d"] = 0.1  # a Matryoshka dimension: not in eval.metrics, kept after them
    history = dev_history([restored, live], "ndcg@10", ["nDCG@10", "MAP@100", "MRR@10"])
    assert [list(entry) for entry in history] == [
        ["step", "epoch", "ndcg@10", "map@100", "mrr@10", "ndcg@10@64d"],
        ["step", "epoch", "ndcg@10", "map@100", "mrr@10"],
    ]


def comparison(base: list[float], tuned: list[float]):
    ids = [f"q{i}" for i in range(len(base))]
    return compare_per_query(dict(zip(ids, base, strict=True)), dict(zip(ids, tuned, strict=True)), "ndcg@10")


def test_a_tiny_dev_gain_is_not_enough_under_the_paired_test():
    """The +0.0002 that shipped a LoRA checkpoint: a strict gain, far from significant, keeps the base model."""
    base = [0.5] * 40
    tuned = [0.5 + (0.0102 if i % 2 else -0.0098) for i in range(40)]  # mean gain +0.0002, half wins, half losses
    check = comparison(base, tuned)
    rule = SelectionRule(min_delta=0.0, alpha=0.05)

    selection = select_model(history(0.5, 0.5002), "ndcg@10", rule, check, "the whole dev corpus (9 documents)")

    assert selection.chosen == "base" and selection.delta == pytest.approx(0.0002)
    assert selection.rule == "Δ > 0 and paired randomisation test p < 0.05 on the whole dev corpus (9 documents)"
    assert selection.dev_comparison["queries"] == 40 and selection.dev_comparison["p_permutation"] > 0.05
    assert f"p = {check.p_permutation:.2g} over 40 queries" in selection.verdict
    assert selection.verdict.endswith(f"model/ is the base model (rule: {selection.rule})")
    # The same figures under the old rule (any gain) keep the checkpoint: the rule is what decided.
    assert select_model(history(0.5, 0.5002), "ndcg@10", SelectionRule(0.0, None), check).chosen == "fine_tuned"


def test_a_consistent_dev_gain_passes_the_test_and_min_delta_applies_on_top():
    base = [0.4] * 40
    tuned = [0.45 + (0.01 if i % 2 else 0.0) for i in range(40)]  # every query gains
    check = comparison(base, tuned)
    selection = select_model(history(0.4, 0.44, 0.455), "ndcg@10", SelectionRule(0.0, 0.05), check)
    assert selection.chosen == "fine_tuned" and selection.step == 20
    assert selection.base_dev == pytest.approx(0.4) and selection.best_dev == pytest.approx(0.455)
    assert selection.dev_comparison["significant"] and "(rule: Δ > 0 and paired" in selection.verdict

    strict = select_model(history(0.4, 0.44, 0.455), "ndcg@10", SelectionRule(0.06, 0.05), check)
    assert strict.chosen == "base" and strict.rule.startswith("Δ > 0.06 and")


def test_the_whole_corpus_figures_decide_over_the_pools():
    """On the pool the checkpoint looked better (0.60 vs 0.50); on the whole corpus it is not: the base stays."""
    check = comparison([0.5] * 30, [0.5] * 29 + [0.49])
    selection = select_model(history(0.5, 0.6), "ndcg@10", SelectionRule(0.0, None), check, "the whole dev corpus")
    assert selection.chosen == "base" and selection.best_dev == pytest.approx(check.mean_b)
    assert selection.delta == pytest.approx(-0.01 / 30)


def test_decide_on_dev_ranks_the_whole_corpus_not_the_pool(tiny_model_dir, noise_beir):
    """The pool's history says +0.10; ranked against every dev document, the checkpoint (here the base model
    itself) gains nothing, so the base model stays, and the figures recorded are the whole corpus's."""
    from sentence_transformers import SentenceTransformer

    from embedtune.config import build_config
    from embedtune.data.prepare import prepare_data
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator
    from embedtune.training.selection import decide_on_dev

    config = build_config(None, [f"data.path={noise_beir}", "train.selection_alpha=none"])
    dev = prepare_data(config.data).dev
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    judged = {doc for judgements in dev.qrels.values() for doc in judgements}
    pool = RetrievalEvaluator({d: dev.corpus[d] for d in judged}, dev.queries, dev.qrels, metrics=["ndcg@10"])
    whole = RetrievalEvaluator(dev.corpus, dev.queries, dev.qrels, metrics=["ndcg@10"])
    pool_score, whole_score = pool(model)["ndcg@10"], whole(model)["ndcg@10"]
    assert pool_score > whole_score  # documents outside the pool outrank relevant ones: the pool flatters

    selection = decide_on_dev(config, dev, history(whole_score, whole_score + 0.10), model, model)

    assert selection.chosen == "base" and selection.delta == 0.0
    assert selection.base_dev == pytest.approx(whole_score) and selection.best_dev == pytest.approx(whole_score)
    assert selection.rule == f"Δ > 0 on the whole dev corpus ({len(dev.corpus)} documents)"
    assert selection.dev_comparison["queries"] == len(dev.qrels)
