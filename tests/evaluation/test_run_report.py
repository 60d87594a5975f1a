import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from embedtune.cli import main
from embedtune.evaluation.pair_metrics import pair_diagnostics
from embedtune.evaluation.run_report import (
    FIGURES_DIR,
    REPORT_FILE,
    SELECTION_WARNING,
    compare_report,
    write_report,
)
from embedtune.runs import ExtraReport, Report
from tests.runs.factories import finished_run, make_metrics, started_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def full_metrics(role="test", split="test"):
    metrics = make_metrics(role=role, split=split)
    base = {**metrics.report.base, "recall@10": 0.51234, "ndcg@10@128d": 0.2812, "ndcg@10@64d": 0.25}
    tuned = {**metrics.report.fine_tuned, "recall@10": 0.60005, "ndcg@10@128d": 0.3301, "ndcg@10@64d": 0.29876}
    rng = np.random.default_rng(0)
    labels = rng.choice([0.0, 1.0], size=40)
    pairs = {
        name: pair_diagnostics(labels + rng.normal(0, noise, 40), labels, labels + rng.normal(0, noise, 40), labels)
        for name, noise in (("base", 2.0), ("fine_tuned", 0.3))
    }
    return replace(
        metrics,
        report=Report(split=split, role=role, base=base, fine_tuned=tuned),
        dev_history=[
            {"step": 0, "epoch": 0.0, "ndcg@10": 0.33},
            {"step": 100, "epoch": 0.5, "ndcg@10": 0.3311},
            {"step": 200, "epoch": 1.0, "ndcg@10": 0.3477},
        ],
        loss_history=[
            {
                "step": s,
                "loss": 1.0 / s,
                "learning_rate": 2e-5 * (1 - s / 300),
                "grad_norm": 1.0,
                "loss/infonce": 0.9 / s,
            }
            for s in range(10, 210, 10)
        ],
        significance={
            "metric": "ndcg@10",
            "queries": 200,
            "mean_a": 0.3,
            "mean_b": 0.3456,
            "mean_diff": 0.0456,
            "ci_low": 0.0123,
            "ci_high": 0.0789,
            "p_permutation": 0.0021,
            "p_ttest": 0.0018,
            "wins": 80,
            "losses": 40,
            "ties": 80,
            "significant": True,
            "verdict": "fine-tuned vs base: nDCG@10 +0.0456 (95 % CI +0.0123 … +0.0789): significant at 0.05",
        },  # fmt: skip
        extra_reports=[
            ExtraReport("beir/nfcorpus", "test", {"ndcg@10": 0.32}, {"ndcg@10": 0.2712}, 0.0488, True),
            ExtraReport("beir/scifact", "test", {"ndcg@10": 0.64}, {"ndcg@10": 0.6385}, 0.0015, False),
        ],
        pair_diagnostics={name: value.to_dict() for name, value in pairs.items()},
    )


def write_optional_files(folder, queries=30):
    rng = np.random.default_rng(1)
    base = {f"q{i}": {"ndcg@10": float(rng.uniform()), "mrr@10": 0.5} for i in range(queries)}
    tuned = {
        qid: {"ndcg@10": min(1.0, v["ndcg@10"] + float(rng.normal(0.05, 0.1))), "mrr@10": 0.6}
        for qid, v in base.items()
    }
    (folder / "per_query.json").write_text(json.dumps({"split": "test", "base": base, "fine_tuned": tuned}))
    scores = {
        model: {"positive": rng.normal(mu, 0.1, 50).tolist(), "negative": rng.normal(0.2, 0.1, 80).tolist()}
        for model, mu in (("base", 0.35), ("fine_tuned", 0.6))
    }
    (folder / "score_distributions.json").write_text(json.dumps(scores))


@pytest.fixture()
def full_run(tmp_path):
    folder = finished_run(tmp_path / "runs", "full", full_metrics())
    write_optional_files(folder)
    return folder


def table_after(text, heading_start):
    """Rows (lists of cells) of the first Markdown table after the heading starting with ``heading_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_start))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif rows:
            break
    return rows[2:]  # header and rule dropped


def assert_png(path):
    data = Path(path).read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_report_opens_with_the_verdict(full_run):
    text = write_report(full_run).read_text()
    lines = text.splitlines()
    bullets = [
        line for line in lines[: lines.index(next(x for x in lines if x.startswith("## ")))] if line.startswith("- ")
    ]
    assert bullets[0].startswith("- **`model/` is the checkpoint at step 200**: fine-tuned checkpoint beats")
    assert bullets[1] == "- **Significance:** " + full_metrics().significance["verdict"]
    assert bullets[2] == "- **⚠ forgetting** on `beir/nfcorpus` (test): ndcg@10 0.3200 → 0.2712 (drop 0.0488)"
    assert bullets[3].startswith("- **Pair diagnostics:** base FAIL (ROC AUC ") and "fine-tuned PASS" in bullets[3]
    assert len(bullets) == 4  # the unflagged data set gives no warning
    assert SELECTION_WARNING not in text


def test_every_table_number_equals_metrics_json(full_run):
    text = write_report(full_run).read_text()
    recorded = json.loads((full_run / "metrics.json").read_text())
    base, tuned = recorded["report"]["base"], recorded["report"]["fine_tuned"]
    rows = table_after(text, "## Metrics on `test` (held-out test)")
    assert [row[0] for row in rows] == ["ndcg@10", "map@100", "mrr@10", "recall@10"]
    for name, base_cell, tuned_cell, delta_cell in rows:
        assert base_cell == f"{base[name]:.4f}" and tuned_cell == f"{tuned[name]:.4f}"
        assert delta_cell == f"{tuned[name] - base[name]:+.4f}"
    dims = table_after(text, "## ndcg@10 per Matryoshka dimension")
    assert [row[0] for row in dims] == ["64", "128", "full"]
    for (_, base_cell, tuned_cell, _), key in zip(dims, ["ndcg@10@64d", "ndcg@10@128d", "ndcg@10"], strict=True):
        assert (base_cell, tuned_cell) == (f"{base[key]:.4f}", f"{tuned[key]:.4f}")
    significance = dict(table_after(text, "## Significance"))
    for key in ("mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "p_permutation", "p_ttest"):
        assert significance[key] == f"{recorded['significance'][key]:.4f}"
    assert significance["queries"] == "200" and significance["wins / losses / ties"] == "80 / 40 / 80"
    pairs = {row[0]: row[1:] for row in table_after(text, "## Pair diagnostics")}
    for index, model in enumerate(("base", "fine_tuned")):
        for key in ("roc_auc", "f1", "accuracy", "threshold", "separability", "spearman"):
            assert pairs[key][index] == f"{recorded['pair_diagnostics'][model][key]:.4f}"
    assert pairs["passed"] == ["**fail**", "pass"] and pairs["n_pairs"] == ["40", "40"]
    forgetting = table_after(text, "## Forgetting check")
    assert forgetting[0] == ["beir/nfcorpus", "test", "0.3200", "0.2712", "0.0488", "**⚠ forgetting**"]
    assert forgetting[1][-1] == "no"


def test_figures_are_valid_pngs_linked_from_the_report(full_run):
    text = write_report(full_run).read_text()
    expected = {"metrics.png", "per_query_delta.png", "score_distributions.png", "training.png", "matryoshka.png"}
    assert {path.name for path in (full_run / FIGURES_DIR).iterdir()} == expected
    for name in expected:
        assert f"]({FIGURES_DIR}/{name})" in text
        assert_png(full_run / FIGURES_DIR / name)
    assert "## Per-query Δ ndcg@10 (30 queries)" in text


def test_selection_role_is_flagged(tmp_path):
    folder = finished_run(tmp_path / "runs", "sel", make_metrics(role="selection", split="dev"))
    text = write_report(folder).read_text()
    assert f"the {SELECTION_WARNING}" in text
    assert f"## Metrics on `dev` ({SELECTION_WARNING})" in text


def test_missing_optional_inputs_omit_their_sections(tmp_path):
    folder = finished_run(tmp_path / "runs", "plain", replace(make_metrics(), loss_history=[], dev_history=[]))
    text = write_report(folder).read_text()
    for heading in (
        "Significance",
        "Per-query",
        "Matryoshka",
        "Score distributions",
        "Pair diagnostics",
        "Forgetting",
    ):
        assert heading not in text
    assert "forgetting" not in text
    assert [path.name for path in (folder / FIGURES_DIR).iterdir()] == ["metrics.png"]
    assert table_after(text, "## Selection")[0] == ["chosen", "fine_tuned"]


def test_regenerating_replaces_the_report_files_only(full_run):
    (full_run / "model").mkdir()
    (full_run / "model" / "weights.bin").write_bytes(b"weights")
    records = {name: (full_run / name).read_bytes() for name in ("run.json", "metrics.json", "per_query.json")}
    write_report(full_run)
    (full_run / "score_distributions.json").unlink()
    (full_run / "per_query.json").write_text(json.dumps({"split": "test", "base": {}, "fine_tuned": {}}))
    records["per_query.json"] = (full_run / "per_query.json").read_bytes()
    text = write_report(full_run).read_text()
    assert "Score distributions" not in text and "Per-query" not in text
    figures = {path.name for path in (full_run / FIGURES_DIR).iterdir()}
    assert figures == {"metrics.png", "training.png", "matryoshka.png"}
    assert (full_run / "model" / "weights.bin").read_bytes() == b"weights"
    assert all((full_run / name).read_bytes() == content for name, content in records.items())
    leftovers = [path.name for path in full_run.rglob(".*")]
    assert leftovers == []  # no temporary files left behind


def test_an_unfinished_run_has_no_report(tmp_path):
    folder = started_run(tmp_path / "runs", "busy")
    with pytest.raises(ValueError, match="has not finished"):
        write_report(folder)
    assert not (folder / REPORT_FILE).exists()


def test_report_command(full_run, capsys):
    assert main(["report", "full", "--runs-dir", str(full_run.parent)]) == 0
    assert capsys.readouterr().out.strip() == str(full_run / REPORT_FILE)
    assert (full_run / REPORT_FILE).read_text().startswith(f"# Run report: {full_run.name}")
    assert main(["report", "nope", "--runs-dir", str(full_run.parent)]) == 2
    assert "error: no run matches 'nope'" in capsys.readouterr().err


def test_report_command_on_an_unfinished_run_is_a_one_line_error(tmp_path, capsys):
    started_run(tmp_path / "runs", "busy")
    assert main(["report", "busy", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "has not finished" in err and "Traceback" not in err


def test_runs_compare_write(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    finished_run(runs_dir, "first", make_metrics())
    finished_run(runs_dir, "second", make_metrics(tuned=0.4123, role="selection", split="dev"))
    out = tmp_path / "compare.md"
    assert main(["runs", "--runs-dir", str(runs_dir), "compare", "first", "second", "--write", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Config differences" in printed and f"Wrote {out}" in printed
    text = out.read_text()
    rows = {row[0]: row[1:] for row in table_after(text, "# Run comparison")}
    assert rows["split"] == ["test", "test", "dev (selection)"]
    assert rows["ndcg@10"] == ["0.3000", "0.3456", "0.4123"]
    assert rows["map@100"] == ["0.2500", "0.2750", "0.2750"]
    assert SELECTION_WARNING in text
    assert "](compare-metrics.png)" in text
    assert_png(tmp_path / "compare-metrics.png")


def test_compare_report_needs_two_runs(tmp_path):
    folder = finished_run(tmp_path / "runs", "only")
    with pytest.raises(ValueError, match="at least 2 runs"):
        compare_report([folder], tmp_path / "out.md")


def test_compare_report_shows_a_run_without_metrics_as_dashes(tmp_path):
    runs_dir = tmp_path / "runs"
    done, busy = finished_run(runs_dir, "done"), started_run(runs_dir, "busy")
    text = compare_report([done, busy], tmp_path / "out.md").read_text()
    rows = {row[0]: row[1:] for row in table_after(text, "# Run comparison")}
    assert rows["ndcg@10"] == ["0.3000", "0.3456", "-"] and rows["split"][-1] == "-"
    assert "(running)" in text


def test_report_and_compare_write_have_help(capsys):
    assert main(["report", "--help"]) == 0
    assert "usage: embedtune report" in capsys.readouterr().out
    assert main(["runs", "compare", "--help"]) == 0
    assert "--write FILE" in capsys.readouterr().out
