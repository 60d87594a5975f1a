"""``embedtune prepare pairs``: a mined training file -> labelled pairs with curriculum phases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from embedtune.cli import main
from embedtune.config import ConfigError, CurriculumConfig
from embedtune.data.builders.graded_pairs import build_graded_pairs, graded_pairs
from embedtune.data.curriculum import assign_phases
from embedtune.data.pairs import PairExample, load_pairs
from embedtune.data.training_file import load_triplets
from embedtune.errors import DataError

PHASES = ("easy", "medium", "hard")


def mined_record(index: int, gap: float | None, positives: int = 1, negatives: int = 2) -> dict[str, Any]:
    """A scored record whose difficulty (hardest negative minus best positive) is ``gap``; ``None``: no negatives."""
    record: dict[str, Any] = {
        "query": f"q{index}",
        "pos": [f"p{index}-{k}" for k in range(positives)],
        "pos_scores": [0.8 - 0.1 * k for k in range(positives)],  # the best positive scores 0.8
        "neg": [],
    }
    if gap is not None:
        record["neg"] = [f"n{index}-{k}" for k in range(negatives)]
        record["neg_scores"] = [0.8 + gap - 0.2 * k for k in range(negatives)]
    return record


def write_mined(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    return path


def gaps_file(path: Path, gaps: list[float | None]) -> Path:
    return write_mined(path, [mined_record(index, gap) for index, gap in enumerate(gaps)])


def file_phases(path: Path) -> dict[str, str]:
    """Query -> phase of its pairs (asserting that all of a query's pairs share one phase)."""
    phases: dict[str, set[str | None]] = {}
    for pair in load_pairs(path):
        phases.setdefault(pair.text1, set()).add(pair.phase)
    assert all(len(names) == 1 for names in phases.values())
    return {query: names.pop() for query, names in phases.items()}


def curriculum_phases(mined: Path, phases: tuple[str, ...] = PHASES, thresholds: list[float] | None = None):
    """What a ``source: difficulty`` curriculum assigns to the same mined file: (query -> phase, assignment)."""
    config = CurriculumConfig(enabled=True, source="difficulty", phases=list(phases), thresholds=thresholds)
    examples = load_triplets(mined)
    assignment = assign_phases(examples, config, mined)
    by_query = {ex.query: phases[index] for ex, index in zip(examples, assignment.phase_of, strict=True)}
    return by_query, assignment


def listing(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def test_positives_are_labelled_1_and_negatives_0_in_file_order(tmp_path):
    records = [mined_record(0, 0.1, positives=2, negatives=3), mined_record(1, -0.4), mined_record(2, 0.3)]
    records[1]["query"] = "정보 1번은 무엇인가?"  # non-ASCII text is kept as is
    mined, out = write_mined(tmp_path / "mined.jsonl", records), tmp_path / "pairs.jsonl"

    build_graded_pairs(mined, out)

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert "정보 1번은" in out.read_text(encoding="utf-8")
    assert [(row["text1"], row["text2"], row["label"]) for row in rows] == [
        ("q0", "p0-0", 1.0),
        ("q0", "p0-1", 1.0),
        ("q0", "n0-0", 0.0),
        ("q0", "n0-1", 0.0),
        ("q0", "n0-2", 0.0),
        ("정보 1번은 무엇인가?", "p1-0", 1.0),
        ("정보 1번은 무엇인가?", "n1-0", 0.0),
        ("정보 1번은 무엇인가?", "n1-1", 0.0),
        ("q2", "p2-0", 1.0),
        ("q2", "n2-0", 0.0),
        ("q2", "n2-1", 0.0),
    ]
    assert all(set(row) == {"text1", "text2", "label", "phase"} for row in rows)
    assert [pair.phase for pair in load_pairs(out)] == ["medium"] * 5 + ["easy"] * 3 + ["hard"] * 3


@pytest.mark.parametrize(
    "gaps",
    [
        [0.05, -0.5, -0.1, -0.3, 0.2, -0.2],  # 6 records: terciles of 2
        [0.3, -0.2, 0.1, -0.6, 0.0, 0.25, -0.05],  # 7 records: 3 / 2 / 2 (the first phases take the remainder)
        [0.1, 0.1, 0.1, -0.2, 0.1],  # ties are cut by input order
        [None, 0.2, None, -0.1, 0.0],  # records left without negatives are the easiest
        [0.4, -0.1],  # fewer records than phases: the last phase stays empty
    ],
)
def test_equal_size_phases_are_the_curriculum_terciles(tmp_path, gaps):
    mined, out = gaps_file(tmp_path / "mined.jsonl", gaps), tmp_path / "pairs.jsonl"

    summary = build_graded_pairs(mined, out)

    expected, assignment = curriculum_phases(mined)
    assert file_phases(out) == expected
    assert summary.thresholds == assignment.thresholds
    assert summary.records_per_phase == assignment.counts
    sizes = list(summary.records_per_phase.values())
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    order = sorted(range(len(gaps)), key=lambda index: (float("-inf") if gaps[index] is None else gaps[index], index))
    by_difficulty = [expected[f"q{index}"] for index in order]
    assert by_difficulty == sorted(by_difficulty, key=PHASES.index)  # easy ... hard as difficulty grows


def test_terciles_by_hand(tmp_path):
    mined = gaps_file(tmp_path / "mined.jsonl", [0.05, -0.5, -0.1, -0.3, 0.2, -0.2])
    out = tmp_path / "pairs.jsonl"

    summary = build_graded_pairs(mined, out)

    # difficulties -0.5, -0.3 easy; -0.2, -0.1 medium; 0.05, 0.2 hard
    assert file_phases(out) == {"q1": "easy", "q3": "easy", "q5": "medium", "q2": "medium", "q0": "hard", "q4": "hard"}
    assert (summary.records, summary.pairs) == (6, 18)
    assert summary.records_per_phase == {"easy": 2, "medium": 2, "hard": 2}
    assert summary.pairs_per_phase == {"easy": 6, "medium": 6, "hard": 6}
    assert summary.thresholds == pytest.approx((-0.3, -0.1))
    assert summary.lines() == [
        "records: 6, pairs: 18; difficulty cut points: -0.3000, -0.1000",
        "phase       records    pairs",
        "easy              2        6",
        "medium            2        6",
        "hard              2        6",
    ]


@pytest.mark.parametrize(
    ("phases", "thresholds"),
    [
        (("warm-up", "main"), [0.0]),
        (PHASES, [-0.2, 0.1]),
        (PHASES, [-0.1, 0.2]),  # a difficulty equal to a cut point falls in the easier phase
        (PHASES, [0.5, 0.9]),  # everything easy, two empty phases
        (("only",), []),
    ],
)
def test_given_thresholds_cut_like_the_curriculum(tmp_path, phases, thresholds):
    mined = gaps_file(tmp_path / "mined.jsonl", [-0.5, -0.1, 0.0, 0.2, None, 0.3])
    out = tmp_path / "pairs.jsonl"

    summary = build_graded_pairs(mined, out, phases=phases, thresholds=thresholds)

    expected, assignment = curriculum_phases(mined, phases, thresholds)
    assert file_phases(out) == expected
    assert summary.thresholds == tuple(thresholds)
    assert summary.records_per_phase == assignment.counts and list(summary.records_per_phase) == list(phases)


def test_a_difficulty_on_a_cut_point_goes_to_the_easier_phase(tmp_path):
    mined = gaps_file(tmp_path / "mined.jsonl", [-0.5, -0.25, 0.0, 0.25, 0.5])
    out = tmp_path / "pairs.jsonl"

    build_graded_pairs(mined, out, thresholds=(-0.25, 0.25))

    assert file_phases(out) == {"q0": "easy", "q1": "easy", "q2": "medium", "q3": "medium", "q4": "hard"}


def test_summary_counts_pairs_and_records_per_phase(tmp_path):
    records = [
        mined_record(0, -0.5, positives=1, negatives=1),  # easy: 2 pairs
        mined_record(1, None, positives=3),  # easy (no negatives): 3 pairs
        mined_record(2, 0.0, positives=2, negatives=4),  # medium: 6 pairs
        mined_record(3, 0.4, positives=1, negatives=2),  # hard: 3 pairs
    ]
    mined, out = write_mined(tmp_path / "mined.jsonl", records), tmp_path / "pairs.jsonl"

    summary = build_graded_pairs(mined, out, thresholds=(-0.1, 0.1))

    assert (summary.records, summary.pairs) == (4, 14) and len(load_pairs(out)) == 14
    assert summary.records_per_phase == {"easy": 2, "medium": 1, "hard": 1}
    assert summary.pairs_per_phase == {"easy": 5, "medium": 6, "hard": 3}
    labels = [pair.label for pair in load_pairs(out)]
    assert labels.count(1.0) == 7 and labels.count(0.0) == 7


def test_graded_pairs_in_memory_matches_the_file(tmp_path):
    mined = gaps_file(tmp_path / "mined.jsonl", [0.1, -0.2, 0.3])
    pairs, record_phases, used = graded_pairs(load_triplets(mined), PHASES, None, mined)

    assert record_phases == ("medium", "easy", "hard") and used == pytest.approx((-0.2, 0.1))
    assert pairs[:3] == [
        PairExample("q0", "p0-0", 1.0, "medium"),
        PairExample("q0", "n0-0", 0.0, "medium"),
        PairExample("q0", "n0-1", 0.0, "medium"),
    ]
    out = tmp_path / "pairs.jsonl"
    build_graded_pairs(mined, out)
    assert load_pairs(out) == pairs


@pytest.mark.parametrize("scored", ["none", "some"])
def test_unscored_records_name_the_file_and_neg_scores(tmp_path, scored):
    records = [mined_record(0, 0.1), mined_record(1, 0.2)]
    for record in records if scored == "none" else records[1:]:
        del record["pos_scores"], record["neg_scores"]
    mined, out = write_mined(tmp_path / "mined.jsonl", records), tmp_path / "pairs.jsonl"

    with pytest.raises(DataError) as error:
        build_graded_pairs(mined, out)

    assert error.value.field == "neg_scores" and str(mined) in str(error.value)
    assert "embedtune mine" in str(error.value)
    assert not out.exists()


def test_bad_phases_or_thresholds_are_config_errors_and_write_nothing(tmp_path):
    mined, out = gaps_file(tmp_path / "mined.jsonl", [0.1, 0.2, 0.3]), tmp_path / "pairs.jsonl"
    for phases, thresholds, message in [
        (PHASES, (0.1,), "needs 2 values for 3 phases"),
        (PHASES, (0.2, 0.1), "must be increasing"),
        (("a", "a"), None, "must not repeat a phase"),
        ((), None, "must name at least one phase"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_graded_pairs(mined, out, phases=phases, thresholds=thresholds)
        assert not out.exists()


def test_out_is_refused_before_anything_is_read_and_nothing_is_written(tmp_path):
    missing = tmp_path / "never-read.jsonl"  # OUT is checked first: the mined file is not even opened
    existing = tmp_path / "pairs.jsonl"
    existing.write_text("keep me\n")
    before = listing(tmp_path)

    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        build_graded_pairs(missing, existing)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        build_graded_pairs(missing, tmp_path)
    with pytest.raises(FileNotFoundError, match="folder not found"):
        build_graded_pairs(missing, tmp_path / "no-such-folder" / "pairs.jsonl")

    assert listing(tmp_path) == before and sorted(path.name for path in tmp_path.iterdir()) == ["pairs.jsonl"]
    mined = gaps_file(tmp_path / "mined.jsonl", [0.1, 0.2, 0.3])
    with pytest.raises(IsADirectoryError):
        build_graded_pairs(mined, tmp_path, overwrite=True)  # --overwrite never replaces a folder
    assert existing.read_text() == "keep me\n"


def test_overwrite_replaces_out_and_leaves_no_staging_file(tmp_path):
    mined, out = gaps_file(tmp_path / "mined.jsonl", [0.1, 0.2, 0.3]), tmp_path / "pairs.jsonl"
    out.write_text("old\n")

    build_graded_pairs(mined, out, overwrite=True)

    assert len(load_pairs(out)) == 9
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mined.jsonl", "pairs.jsonl"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_the_pairs_and_prints_the_phases(tmp_path, capsys):
    mined = gaps_file(tmp_path / "mined.jsonl", [0.1, 0.2, 0.3])
    out = tmp_path / "pairs.jsonl"

    code, printed, errors = run(["prepare", "pairs", str(mined), str(out)], capsys)

    assert (code, errors) == (0, "")
    assert printed.splitlines() == [
        f"Wrote {out} from {mined}",
        "records: 3, pairs: 9; difficulty cut points: 0.1000, 0.2000",
        "phase       records    pairs",
        "easy              1        3",
        "medium            1        3",
        "hard              1        3",
    ]
    assert file_phases(out) == {"q0": "easy", "q1": "medium", "q2": "hard"}


def test_cli_phases_thresholds_and_overwrite(tmp_path, capsys):
    mined = gaps_file(tmp_path / "mined.jsonl", [-0.5, -0.05, 0.3])
    out = tmp_path / "pairs.jsonl"
    argv = ["prepare", "pairs", str(mined), str(out), "--phases", "warm-up, main", "--thresholds", " 0"]

    assert run(argv, capsys)[0] == 0
    assert file_phases(out) == {"q0": "warm-up", "q1": "warm-up", "q2": "main"}

    code, _, errors = run(argv, capsys)
    assert code == 2 and errors == f"error: {out}: exists; pass --overwrite to replace it\n"
    assert run([*argv[:-1], "-0.1", "--overwrite"], capsys)[0] == 0
    assert file_phases(out) == {"q0": "warm-up", "q1": "main", "q2": "main"}


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ("a,b", "expected comma-separated numbers, got 'a,b'"),
        ("", "expected comma-separated numbers, got ''"),
        ("0.1,", "expected comma-separated numbers"),
        ("0.2,0.1", "must be increasing"),
        ("0.1", "needs 2 values for 3 phases"),
        ("0.1,0.2,0.3", "needs 2 values for 3 phases"),
        ("nan,0.1", "must be a finite number"),
        ("0.1,inf", "must be a finite number"),
    ],
)
def test_cli_bad_thresholds_are_one_error_line(tmp_path, capsys, thresholds, message):
    mined = gaps_file(tmp_path / "mined.jsonl", [0.1, 0.2, 0.3])
    out = tmp_path / "pairs.jsonl"

    code, printed, errors = run(["prepare", "pairs", str(mined), str(out), "--thresholds", thresholds], capsys)

    assert code == 2 and printed == ""
    assert errors.startswith("error: --thresholds: ") and message in errors
    assert len(errors.splitlines()) == 1 and "Traceback" not in errors
    assert not out.exists()


def test_cli_bad_phases_and_unscored_input_are_one_error_line(tmp_path, capsys):
    mined = gaps_file(tmp_path / "mined.jsonl", [0.1, 0.2, 0.3])
    out = tmp_path / "pairs.jsonl"

    code, _, errors = run(["prepare", "pairs", str(mined), str(out), "--phases", "a,b,a"], capsys)
    assert code == 2 and errors == "error: --phases: must not repeat a phase\n"

    unscored = write_mined(tmp_path / "unscored.jsonl", [{"query": "q", "pos": ["p"], "neg": ["n"]}])
    code, _, errors = run(["prepare", "pairs", str(unscored), str(out)], capsys)
    assert code == 2 and len(errors.splitlines()) == 1
    assert errors.startswith(f"error: {unscored}: field 'neg_scores': ")
    assert not out.exists()


def test_prepare_help_lists_pairs(capsys):
    assert main(["prepare", "--help"]) == 0
    assert "pairs" in capsys.readouterr().out
    assert main(["prepare", "pairs", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--thresholds" in help_text and "--phases" in help_text and "--overwrite" in help_text
