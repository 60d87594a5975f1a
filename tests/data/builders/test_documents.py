from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from embedtune.data.beir import load_beir
from embedtune.data.builders.chunking import WhitespaceTokenizer, sentence_spans
from embedtune.data.builders.docs_beir import build_docs_beir
from embedtune.data.builders.documents import (
    assign_source_splits,
    markdown_title,
    normalize_text,
    read_documents,
)
from embedtune.data.builders.pair_methods import (
    crop_length_range,
    crop_pair,
    ict_pair,
    remove_span,
    title_pair,
)
from embedtune.data.splits import normalize_query
from embedtune.errors import DataError

WHITESPACE = WhitespaceTokenizer()
TOPICS = "river engine forest harbor glacier violin castle desert comet garden orchard lantern".split()


def write(folder: Path, relative: str, text: str | bytes) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def article(topic: str, sentences: int = 6) -> str:
    lines = [f"The {topic} fact number {k} says the {topic} has property {k}." for k in range(sentences)]
    return " ".join(lines[:3]) + "\n\n" + " ".join(lines[3:])


def make_tree(folder: Path) -> Path:
    for index, topic in enumerate(TOPICS):
        if index % 3 == 0:
            write(folder, f"md/{topic}.md", f"# All about the {topic}\n\n{article(topic)}\n")
        elif index % 3 == 1:
            write(folder, f"{topic}.txt", article(topic))
        else:
            body = "".join(f"<p>{paragraph}</p>" for paragraph in article(topic).split("\n\n"))
            write(folder, f"web/{topic}.html", f"<html><script>var x = 1;</script><body>{body}</body></html>")
    return folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }


# --- reading ----------


def test_read_documents_reads_every_type_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    write(tmp_path, "b/notes.md", "Intro   line\n# Real  Title #\n\n\n\nBody\ttext here.\n")
    write(tmp_path, "a.txt", "  plain text\n\n")
    write(
        tmp_path, "b/page.HTM", "<html><head><style>p {}</style></head><body><p>One &amp; two</p><ul><li>x</li></ul>"
    )
    records = [{"_id": "r1", "title": "Record one", "text": "First record."}, {"text": "Second record."}]
    write(tmp_path, "c/data.jsonl", "\n".join(json.dumps(record) for record in records) + "\n\n")
    write(tmp_path, "c/empty.txt", " \n ")
    write(tmp_path, "picture.png", b"\x89PNG")
    write(tmp_path, ".hidden/secret.txt", "never read")
    write(tmp_path, ".also-hidden.txt", "never read")
    found = read_documents(tmp_path)
    summary = [(doc.source, doc.title, doc.title_is_real, doc.text) for doc in found.documents]
    assert summary == [
        ("a.txt", "a", False, "plain text"),
        ("b/notes.md", "Real Title", True, "Intro line\n# Real Title #\n\nBody text here."),
        ("b/page.HTM", "page", False, "One & two\n\nx"),
        ("c/data.jsonl#r1", "Record one", True, "First record."),
        ("c/data.jsonl:2", "data", False, "Second record."),
    ]
    assert (found.files, found.empty) == (5, 1)
    assert [path for path, _ in found.skipped] == ["picture.png"]


def test_normalize_text_and_markdown_title() -> None:
    assert normalize_text("\n a \t b \n c\n\n\n\n d  \n\n") == "a b\nc\n\nd"
    assert markdown_title("text\n## Not this\n#   The  Title  ##\n# Later") == "The  Title"
    assert markdown_title("#NoSpace\n## h2 only") is None


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"title": "t"}', "text", "missing required field"),
        ('{"text": 3}', "text", "expected a string, got number"),
        ('{"text": "ok", "title": ["x"]}', "title", "expected a string, got array"),
        ('{"text": "ok", "_id": "a"}', "_id", "duplicate id"),
        ('{"text": "ok", "_id": ""}', "_id", "empty id"),
        ("[1, 2]", None, "expected a JSON object"),
        ('{"text": ', None, "malformed JSON"),
    ],
)
def test_bad_jsonl_line_names_file_line_and_field(tmp_path: Path, line: str, field: str | None, message: str) -> None:
    path = write(tmp_path, "docs/x.jsonl", '{"text": "fine", "_id": "a"}\n\n' + line + "\n")
    with pytest.raises(DataError) as caught:
        read_documents(tmp_path / "docs")
    assert (caught.value.path, caught.value.line, caught.value.field) == (path, 3, field)
    assert message in str(caught.value) and str(caught.value).startswith(f"{path}:3:")


def test_unreadable_inputs_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        read_documents(tmp_path / "missing")
    bad = write(tmp_path, "docs/latin1.txt", "caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8") as caught:
        read_documents(tmp_path / "docs")
    assert caught.value.path == bad


# --- splits ----------


def test_assign_source_splits_is_seeded_and_fills_every_split() -> None:
    sources = [f"doc{k}.txt" for k in range(40)]
    first = assign_source_splits(sources, (0.8, 0.1, 0.1), seed=1)
    assert first == assign_source_splits(list(reversed(sources)), (0.8, 0.1, 0.1), seed=1)
    assert first != assign_source_splits(sources, (0.8, 0.1, 0.1), seed=2)
    assert set(first) == set(sources) and set(first.values()) == {"train", "dev", "test"}
    tiny = assign_source_splits(["a", "b", "c"], (0.8, 0.1, 0.1), seed=0)
    assert sorted(tiny.values()) == ["dev", "test", "train"]
    assert set(assign_source_splits(["a", "b"], (0.5, 0.5, 0.0), seed=0).values()) == {"train", "dev"}
    with pytest.raises(ValueError, match="at least 3"):
        assign_source_splits(["a", "b"], (0.8, 0.1, 0.1), seed=0)


# --- pair methods ----------

PASSAGE = "Alpha beta gamma delta.\nEpsilon zeta eta theta iota. Kappa lambda mu!\n\nNu xi omicron pi rho sigma."


def test_ict_query_is_a_sentence_removed_at_the_set_rate() -> None:
    sentences = {" ".join(PASSAGE[a:b].split()) for a, b in sentence_spans(PASSAGE)}
    removed_counts = {}
    for probability in (0.0, 0.9, 1.0):
        removed = 0
        for seed in range(1000):
            pair = ict_pair(PASSAGE, random.Random(seed), probability)
            assert pair is not None and pair.query in sentences
            if pair.sentence_removed:
                removed += 1
                assert pair.query not in " ".join(pair.document.split())
                assert len(pair.document) < len(PASSAGE)
                others = sentences - {pair.query}
                assert all(other in " ".join(pair.document.split()) for other in others)
            else:
                assert pair.document == PASSAGE
        removed_counts[probability] = removed
    assert removed_counts[0.0] == 0 and removed_counts[1.0] == 1000
    assert 860 <= removed_counts[0.9] <= 940
    assert ict_pair(PASSAGE, random.Random(7), 0.9) == ict_pair(PASSAGE, random.Random(7), 0.9)


def test_ict_skips_headings_fragments_and_single_sentences() -> None:
    assert ict_pair("Only one sentence here.", random.Random(0)) is None
    assert ict_pair("# A Heading Title\n\nTwo words.", random.Random(0)) is None
    text = "cut off start. A full sentence stands here. And another one follows."
    inside = [span for span in sentence_spans(text) if span[0] > 0]
    queries = {ict_pair(text, random.Random(seed), 0.5, inside).query for seed in range(50)}
    assert queries == {"A full sentence stands here.", "And another one follows."}


def test_remove_span_keeps_the_stronger_gap() -> None:
    assert remove_span("a b. c d. e f.", 5, 9) == "a b. e f."
    assert remove_span("a b.\n\nc d. e f.", 6, 10) == "a b.\n\ne f."
    assert remove_span("a b. c d.", 0, 4) == "c d."


@pytest.mark.parametrize(("count", "ratio"), [(37, (0.1, 0.5)), (40, (0.3, 0.3)), (37, (0.5, 1.0))])
def test_crops_lie_in_the_passage_with_the_configured_length(count: int, ratio: tuple[float, float]) -> None:
    words = [f"w{k}" for k in range(count)]
    passage = " ".join(words[:20]) + "\n" + " ".join(words[20:])
    low, high = math.ceil(ratio[0] * count), math.floor(ratio[1] * count)
    lengths = set()
    for seed in range(300):
        pair = crop_pair(passage, WHITESPACE, random.Random(seed), ratio)
        if pair is None:  # only a crop covering the whole passage is refused
            assert ratio[1] == 1.0
            continue
        assert pair.document == passage
        crop = pair.query.split()
        start = words.index(crop[0])
        assert crop == words[start : start + len(crop)]
        assert low <= len(crop) <= high
        lengths.add(len(crop))
    assert lengths == set(range(low, high + (0 if ratio[1] == 1.0 else 1)))


def test_crops_meet_the_part_no_neighbour_shares() -> None:
    words = [f"w{k}" for k in range(40)]
    passage = " ".join(words)
    own = (passage.index("w30"), passage.index("w34") + len("w34"))  # tokens 30..34 are the passage's own
    firsts = set()
    for seed in range(400):
        crop = crop_pair(passage, WHITESPACE, random.Random(seed), (0.1, 0.2), own).query.split()
        first, last = words.index(crop[0]), words.index(crop[-1])
        assert last >= 30 and first <= 34
        firsts.add(first)
    assert min(firsts) == 30 - 8 + 1 and max(firsts) == 34  # the longest crop is 8 tokens


def test_crop_length_range_and_bad_ratios() -> None:
    assert crop_length_range(10, 0.1, 0.5) == (1, 5)
    assert crop_length_range(3, 0.1, 0.5) == (1, 1)
    assert crop_length_range(37, 0.3, 0.3) == (11, 11)  # no length is exactly 30 %: the nearest one
    with pytest.raises(ValueError, match="crop ratio"):
        crop_pair("a b c", WHITESPACE, random.Random(0), (0.6, 0.5))


def test_title_pair() -> None:
    assert title_pair("  The   Title ", "Body text.").query == "The Title"
    assert title_pair(" ", "Body text.") is None
    assert title_pair("Same text", "Same  text") is None


# --- building a BEIR folder ----------


def positives_by_split(out: Path) -> dict[str, set[str]]:
    data = load_beir(out)
    return {split: {doc for judged in qrels.values() for doc in judged} for split, qrels in data.qrels.items()}


def check_no_leakage(out: Path) -> None:
    queries = {record["_id"]: record for record in read_jsonl(out / "queries.jsonl")}
    corpus = {record["_id"]: record for record in read_jsonl(out / "corpus.jsonl")}
    data = load_beir(out)
    source_splits: dict[str, set[str]] = {}
    for split, qrels in data.qrels.items():
        for query_id, judged in qrels.items():
            source = queries[query_id]["metadata"]["source"]
            source_splits.setdefault(source, set()).add(split)
            assert [corpus[doc_id]["metadata"]["source"] for doc_id in judged] == [source]
    assert source_splits and all(len(splits) == 1 for splits in source_splits.values())
    texts = [normalize_query(record["text"]) for record in queries.values()]
    assert len(texts) == len(set(texts))


@pytest.mark.parametrize("method", ["ict", "crop"])
def test_build_docs_loads_with_no_leakage_and_is_reproducible(tmp_path: Path, method: str) -> None:
    source = make_tree(tmp_path / "docs")
    options = {"method": method, "tokenizer": WHITESPACE, "chunk_tokens": 30, "overlap_tokens": 8}
    summary = build_docs_beir(source, tmp_path / "one", seed=3, **options)
    build_docs_beir(source, tmp_path / "two", seed=3, **options)
    build_docs_beir(source, tmp_path / "three", seed=4, **options)
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")
    assert folder_bytes(tmp_path / "one") != folder_bytes(tmp_path / "three")
    check_no_leakage(tmp_path / "one")
    data = load_beir(tmp_path / "one")
    assert set(data.qrels) == {"train", "dev", "test"}
    assert summary.documents == len(TOPICS) and summary.passages == len(data.corpus)
    assert summary.queries == len(data.queries) == sum(counts.queries for counts in summary.splits.values())
    corpus = read_jsonl(tmp_path / "one" / "corpus.jsonl")
    assert not any("<" in record["text"] or "var x" in record["text"] for record in corpus)
    if method == "crop":  # the corpus is the real passages; each query is a piece of its positive
        queries = {record["_id"]: record["text"] for record in read_jsonl(tmp_path / "one" / "queries.jsonl")}
        for qrels in data.qrels.values():
            for query_id, judged in qrels.items():
                (doc_id,) = judged
                assert queries[query_id] in " ".join(data.corpus[doc_id].split())


def test_removed_ict_sentences_are_not_left_in_overlapping_neighbours(tmp_path: Path) -> None:
    for topic in TOPICS:
        text = " ".join(f"The {topic} owns item {k}." for k in range(40))  # 5-token sentences
        write(tmp_path, f"docs/{topic}.txt", text)
    options = {"tokenizer": WHITESPACE, "chunk_tokens": 30, "overlap_tokens": 10, "remove_prob": 1.0}
    summary = build_docs_beir(tmp_path / "docs", tmp_path / "out", **options)
    data = load_beir(tmp_path / "out")
    texts = [" ".join(text.split()) for text in data.corpus.values()]
    assert summary.sentences_removed == len(data.queries) > 2 * len(TOPICS)
    assert not any(query in text for query in data.queries.values() for text in texts)
    check_no_leakage(tmp_path / "out")


def test_duplicate_passages_are_kept_once(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "docs")
    assert (source / "engine.txt").is_file()
    write(source, "zz-copy/engine-again.txt", article("engine"))  # the same text as engine.txt
    write(source, "zz-copy/engine-spaced.txt", article("engine").replace(" ", "  \t"))  # the same but for whitespace
    summary = build_docs_beir(source, tmp_path / "out", tokenizer=WHITESPACE, chunk_tokens=200, overlap_tokens=0)
    corpus = read_jsonl(tmp_path / "out" / "corpus.jsonl")
    assert summary.duplicate_passages == 2
    assert summary.passages == len(corpus) == len(TOPICS)
    assert not any(record["metadata"]["source"].startswith("zz-copy/") for record in corpus)
    check_no_leakage(tmp_path / "out")


def test_title_method_uses_real_titles_and_first_passages(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "docs")
    records = [{"title": f"Record {k} heading", "text": article(f"record{k}")} for k in range(4)]
    records.append({"title": "Record 0 heading", "text": article("duplicate title")})
    write(source, "records.jsonl", "\n".join(json.dumps(record) for record in records))
    summary = build_docs_beir(
        source, tmp_path / "out", method="title", tokenizer=WHITESPACE, chunk_tokens=12, overlap_tokens=2
    )
    queries = read_jsonl(tmp_path / "out" / "queries.jsonl")
    corpus = {record["_id"]: record for record in read_jsonl(tmp_path / "out" / "corpus.jsonl")}
    titled = {f"md/{topic}.md": f"All about the {topic}" for topic in TOPICS[::3]}
    titled.update({f"records.jsonl:{k + 1}": f"Record {k} heading" for k in range(4)})
    assert {record["metadata"]["source"]: record["text"] for record in queries} == titled
    assert summary.duplicate_queries == 1
    data = load_beir(tmp_path / "out")
    for qrels in data.qrels.values():
        for judged in qrels.values():
            (doc_id,) = judged
            assert corpus[doc_id]["metadata"]["passage"] == 0 and corpus[doc_id]["title"] == ""
    check_no_leakage(tmp_path / "out")


def test_destination_and_data_errors(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "docs")
    out = tmp_path / "out"
    build_docs_beir(source, out, tokenizer=WHITESPACE)
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_docs_beir(source, out, tokenizer=WHITESPACE, seed=9)
    build_docs_beir(source, out, tokenizer=WHITESPACE, seed=9, overwrite=True)
    assert load_beir(out).queries
    write(tmp_path, "few/a.txt", "One sentence here. And a second one here.")
    with pytest.raises(DataError, match="need at least 3 source documents"):
        build_docs_beir(tmp_path / "few", tmp_path / "few-out", tokenizer=WHITESPACE)
    write(tmp_path, "none/x.png", b"\x00")
    with pytest.raises(DataError, match="no document with text"):
        build_docs_beir(tmp_path / "none", tmp_path / "none-out", tokenizer=WHITESPACE)
    with pytest.raises(ValueError, match="method"):
        build_docs_beir(source, tmp_path / "bad", method="cloze", tokenizer=WHITESPACE)
    assert not (tmp_path / "few-out").exists() and not (tmp_path / "none-out").exists()
