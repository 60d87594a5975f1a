from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.cli import main
from embedtune.data.builders.graded_pairs import build_graded_pairs
from embedtune.data.errors import DataError
from embedtune.data.pairs import load_pairs


def write_mined(path: Path, gaps: list[float], scored: bool = True) -> Path:
    """One record per gap: positive score 0.8, two negatives, the hardest at 0.8 + gap (difficulty = gap)."""
    records = []
    for index, gap in enumerate(gaps):
        record = {"query": f"q{index}", "pos": [f"p{index}"], "neg": [f"n{index}a", f"n{index}b"]}
        if scored:
            record |= {"pos_scores": [0.8], "neg_scores": [0.8 + gap, 0.1]}
        records.append(record)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def phases_by_query(path: Path) -> dict[str, str]:
    return {pair.text1: pair.phase for pair in load_pairs(path)}


def test_pairs_are_labelled_and_cut_into_equal_size_phases(tmp_path):
    mined = write_mined(tmp_path / "mined.jsonl", [0.05, -0.5, -0.1, -0.3, 0.2, -0.2])
    out = tmp_path / "pairs.jsonl"

    summary = build_graded_pairs(mined, out)

    pairs = load_pairs(out)
    assert [(p.text1, p.text2, p.label) for p in pairs[:3]] == [
        ("q0", "p0", 1.0),
        ("q0", "n0a", 0.0),
        ("q0", "n0b", 0.0),
    ]
    # difficulties -0.5, -0.3 easy; -0.2, -0.1 medium; 0.05, 0.2 hard
    assert phases_by_query(out) == {
        "q1": "easy",
        "q3": "easy",
        "q5": "medium",
        "q2": "medium",
        "q0": "hard",
        "q4": "hard",
    }
    assert summary.records == 6 and summary.pairs == 18
    assert summary.records_per_phase == {"easy": 2, "medium": 2, "hard": 2}
    assert summary.pairs_per_phase == {"easy": 6, "medium": 6, "hard": 6}
    assert summary.thresholds == pytest.approx((-0.3, -0.1))


def test_thresholds_and_phase_names_are_honoured(tmp_path):
    mined = write_mined(tmp_path / "mined.jsonl", [-0.5, -0.05, 0.3])
    out = tmp_path / "pairs.jsonl"

    build_graded_pairs(mined, out, phases=("warm-up", "main"), thresholds=(0.0,))

    assert phases_by_query(out) == {"q0": "warm-up", "q1": "warm-up", "q2": "main"}


def test_unscored_records_name_the_file_and_field(tmp_path):
    mined = write_mined(tmp_path / "mined.jsonl", [0.1, 0.2], scored=False)
    with pytest.raises(DataError) as error:
        build_graded_pairs(mined, tmp_path / "pairs.jsonl")
    assert error.value.field == "neg_scores" and str(mined) in str(error.value)
    assert not (tmp_path / "pairs.jsonl").exists()


def test_out_is_refused_before_anything_is_read(tmp_path):
    missing = tmp_path / "never-read.jsonl"
    existing = tmp_path / "pairs.jsonl"
    existing.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_graded_pairs(missing, existing)
    assert existing.read_text() == "keep me\n"
    with pytest.raises(IsADirectoryError):
        build_graded_pairs(missing, tmp_path)
    with pytest.raises(FileNotFoundError, match="folder not found"):
        build_graded_pairs(missing, tmp_path / "no-such-folder" / "pairs.jsonl")


def test_overwrite_replaces_out(tmp_path):
    mined = write_mined(tmp_path / "mined.jsonl", [0.1, 0.2, 0.3])
    out = tmp_path / "pairs.jsonl"
    out.write_text("old\n")
    build_graded_pairs(mined, out, overwrite=True)
    assert len(load_pairs(out)) == 9


def test_cli_prints_the_phases_and_rejects_bad_thresholds(tmp_path, capsys):
    mined = write_mined(tmp_path / "mined.jsonl", [0.1, 0.2, 0.3])
    out = tmp_path / "pairs.jsonl"

    assert main(["prepare", "pairs", str(mined), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "records: 3, pairs: 9" in printed and "easy" in printed and "hard" in printed

    for thresholds, message in (("a,b", "expected comma-separated numbers"), ("0.2,0.1", "must be increasing")):
        code = main(["prepare", "pairs", str(mined), str(tmp_path / "other.jsonl"), "--thresholds", thresholds])
        error = capsys.readouterr().err.strip()
        assert code == 2 and error.startswith("error: --thresholds: ") and message in error
        assert len(error.splitlines()) == 1 and not (tmp_path / "other.jsonl").exists()
