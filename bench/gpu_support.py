"""What ``bench/gpu.py`` needs besides the runs: the smoke slices of the data sets and the rows of the GPU table."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SMOKE_QUERIES = {"train": 30, "test": 12}
SMOKE_DOCUMENTS = 120
SMOKE_ARTICLES = 12

GPU_HEADING = "## GPU"
TABLE_HEADER = (
    "| date | run | result (nDCG@10 base → fine-tuned) | data s | wall s | train s | device | versions | commit |",
    "|---|---|---|---|---|---|---|---|---|",
)
GPU_INTRO = (
    "Rows appended by `bench/gpu.py`: one CUDA device, each training run in its own process with a cold embedding "
    "cache, the recipes with their own settings (recipe 1 without the weight sweep, recipe 3 at its shipped rate). "
    "Result: the run's reported split (SciFact: test) then its extra data sets; a row marked *(base kept)* selected "
    "the base model on dev. data s: the recipe's data commands; wall s: the run from start to report; train s: its "
    "training."
)


@dataclass
class Row:
    """One row of the GPU table."""

    run: str
    result: str
    data_s: float | None = None
    wall_s: float | None = None
    train_s: float | None = None


# --- smoke slices ----------------------------------------------------------------------------------------------


def scifact_slice(source: Path, target: Path) -> Path:
    """Write a small BEIR copy of SciFact: the first queries of train and test, their abstracts and a few others."""
    if (target / "corpus.jsonl").is_file():
        return target
    qrels = {split: first_queries(source / "qrels" / f"{split}.tsv", count) for split, count in SMOKE_QUERIES.items()}
    query_ids = {row[0] for rows in qrels.values() for row in rows}
    judged = {row[1] for rows in qrels.values() for row in rows}
    corpus = [(json.loads(line)["_id"], line) for line in (source / "corpus.jsonl").read_text("utf-8").splitlines()]
    documents = [line for doc_id, line in corpus if doc_id in judged]
    documents += [line for doc_id, line in corpus if doc_id not in judged][: max(SMOKE_DOCUMENTS - len(documents), 0)]
    queries = [
        line
        for line in (source / "queries.jsonl").read_text("utf-8").splitlines()
        if json.loads(line)["_id"] in query_ids
    ]
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore", *("\t".join(row) for row in rows)]
        (target / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (target / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (target / "corpus.jsonl").write_text("\n".join(documents) + "\n", encoding="utf-8")
    return target


def first_queries(path: Path, count: int) -> list[list[str]]:
    """Return the ``[query, document, score]`` rows of the first ``count`` queries of a BEIR qrels file."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    kept = set(list(dict.fromkeys(row[0] for row in rows))[:count])
    return [row for row in rows if row[0] in kept]


def korquad_slice(source: Path, target: Path) -> Path:
    """Write a small copy of the KorQuAD file: the first articles, two paragraphs and three questions each."""
    if target.is_file():
        return target
    data = json.loads(source.read_text(encoding="utf-8"))
    articles = [
        dict(
            article, paragraphs=[dict(paragraph, qas=paragraph["qas"][:3]) for paragraph in article["paragraphs"][:2]]
        )
        for article in data["data"][:SMOKE_ARTICLES]
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({**data, "data": articles}, ensure_ascii=False), encoding="utf-8")
    return target


# --- the record ----------------------------------------------------------------------------------------------------


def library_versions() -> str:
    """Name the versions that decide the figures: torch (and its CUDA), sentence-transformers, transformers, peft."""
    import torch

    versions = []
    for name in ("torch", "sentence-transformers", "transformers", "peft"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} absent")
    return ", ".join(versions) + f", CUDA {torch.version.cuda or 'none'}"


def table_rows(rows: list[Row], device: str, versions: str, commit: str) -> list[str]:
    """Format rows as lines of the GPU table."""

    def seconds(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    return [
        f"| {date.today()} | {row.run} | {row.result} | {seconds(row.data_s)} | {seconds(row.wall_s)} | "
        f"{seconds(row.train_s)} | {device} | {versions} | {commit} |"
        for row in rows
    ]


def add_rows(text: str, lines: list[str]) -> str:
    """Return ``text`` (benchmarks.md) with ``lines`` at the end of its GPU section's table.

    The section (heading, a sentence, the table's header) is added at the end when it is missing; a section without
    a table gets the header before the rows.
    """
    page = text.rstrip("\n").split("\n") if text.strip() else []
    if GPU_HEADING not in page:
        section = [GPU_HEADING, "", *textwrap.wrap(GPU_INTRO, 116), "", *TABLE_HEADER, *lines]
        return "\n".join([*page, "", *section] if page else section) + "\n"
    start = page.index(GPU_HEADING)
    end = next((i for i in range(start + 1, len(page)) if page[i].startswith(("# ", "## "))), len(page))
    table = [i for i in range(start, end) if page[i].startswith("|")]
    at = table[-1] + 1 if table else end
    page[at:at] = lines if table else ["", *TABLE_HEADER, *lines]
    return "\n".join(page) + "\n"


def record(rows: list[Row], device: str, target: Path) -> None:
    """Add the rows to ``target``'s GPU section."""
    from embedtune.runs.folder import git_commit

    full_commit = git_commit(ROOT) or "unknown"
    commit = full_commit[:12] + ("+dirty" if full_commit.endswith("+dirty") else "")
    lines = table_rows(rows, device, library_versions(), commit)
    text = target.read_text(encoding="utf-8") if target.exists() else ""
    target.write_text(add_rows(text, lines), encoding="utf-8")
    print(f"{len(lines)} rows added to {target}")
