import pytest

from embedtune.training.selection import dev_history, select_model


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
        "model/ is the base model"
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
