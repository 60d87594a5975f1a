from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from embedtune.data.beir import load_beir
from embedtune.data.builders.sentences import locate_answer, split_sentences
from embedtune.data.builders.squad import SplitCounts, build_squad_beir, split_articles, split_sizes
from embedtune.errors import DataError

KORQUAD_DEV = Path(__file__).resolve().parents[2].parent / "shared/datasets/korquad-v1.0/KorQuAD_v1.0_dev.json"
TRAIN_ONLY = (1.0, 0.0, 0.0)


def qa(qid: str, question: str, *answers: Any, **extra: Any) -> dict[str, Any]:
    return {"id": qid, "question": question, "answers": list(answers), **extra}


def span(context: str, text: str, occurrence: int = 0) -> dict[str, Any]:
    """An answer object for the ``occurrence``-th appearance of ``text`` in ``context``."""
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(text, start + 1)
    return {"text": text, "answer_start": start}


def paragraph(context: str, *qas: dict[str, Any]) -> dict[str, Any]:
    return {"context": context, "qas": list(qas)}


def article(title: str, *paragraphs: dict[str, Any]) -> dict[str, Any]:
    return {"title": title, "paragraphs": list(paragraphs)}


def write_squad(path: Path, articles: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"version": "v2.0", "data": articles}, ensure_ascii=False), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def many_articles(count: int) -> list[dict[str, Any]]:
    articles = []
    for index in range(count):
        context = f"Topic {index} is about item {index}. It has {index} parts."
        questions = [qa(f"a{index}-q1", f"What is topic {index} about?", span(context, f"item {index}"))]
        questions.append(qa(f"a{index}-q2", f"How many parts has topic {index}?", f"{index} parts"))
        articles.append(article(f"Article {index:02d}", paragraph(context, *questions)))
    return articles


def test_paragraph_mode_writes_a_loadable_beir_folder(tmp_path: Path) -> None:
    context = "Apples are red. Bananas are yellow."
    questions = [qa("q1", "What colour are apples?", span(context, "red")), qa("q2", "Bananas?", "yellow")]
    source = write_squad(tmp_path / "squad.json", [article("Fruit", paragraph(context, *questions))])
    out = tmp_path / "out"
    summary = build_squad_beir(source, out, fractions=TRAIN_ONLY)

    data = load_beir(out)
    assert set(data.qrels) == {"train"}  # a zero share writes no qrels file
    corpus = read_jsonl(out / "corpus.jsonl")
    assert [(record["title"], record["text"]) for record in corpus] == [("Fruit", context)]
    doc_id = corpus[0]["_id"]
    assert data.qrels["train"] == {"q1": {doc_id: 1}, "q2": {doc_id: 1}}
    queries = read_jsonl(out / "queries.jsonl")
    assert [query["text"] for query in queries] == ["What colour are apples?", "Bananas?"]
    assert queries[0]["metadata"] == {"answers": [span(context, "red")], "article": "Fruit"}
    assert queries[1]["metadata"] == {"answers": [{"text": "yellow", "answer_start": None}], "article": "Fruit"}
    assert (summary.articles, summary.paragraphs, summary.documents, summary.questions) == (1, 1, 1, 2)
    assert (summary.merged_paragraphs, summary.unanswerable, summary.unlocated) == (0, 0, 0)
    assert summary.splits == {"train": SplitCounts(articles=1, queries=2, documents=1)}
    assert not list(tmp_path.glob(".out.*"))  # no temporary folder left behind


def test_html_contexts_become_clean_text(tmp_path: Path) -> None:
    context = (
        "<div><p>Seoul is the capital &amp; largest city.</p><script>var x = '<p>no</p>';</script>"
        "<style>p {color: red}</style><p>It&nbsp;has <b>ten</b> million people &lt;approx.&gt;</p></div>"
    )
    source = write_squad(tmp_path / "s.json", [article("Seoul", paragraph(context, qa("q", "How many?", "ten")))])
    build_squad_beir(source, tmp_path / "out", fractions=TRAIN_ONLY)
    (record,) = read_jsonl(tmp_path / "out" / "corpus.jsonl")
    assert record["text"] == "Seoul is the capital & largest city.\nIt has ten million people <approx.>"


def test_identical_paragraphs_are_merged(tmp_path: Path) -> None:
    articles = [
        article(
            "A",
            paragraph("Same  text here.", qa("q1", "first?", "Same")),
            paragraph("<p>Same text\nhere.</p>", qa("q2", "second?", "text")),
            paragraph("Other text.", qa("q3", "third?", "Other")),
        ),
        article("B", paragraph("Same text here.", qa("q4", "fourth?", "here"))),  # another title: its own document
    ]
    source = write_squad(tmp_path / "s.json", articles)
    summary = build_squad_beir(source, tmp_path / "out", fractions=TRAIN_ONLY)
    corpus = read_jsonl(tmp_path / "out" / "corpus.jsonl")
    assert sorted((record["title"], record["text"]) for record in corpus) == [
        ("A", "Other text."),
        ("A", "Same text here."),
        ("B", "Same text here."),
    ]
    qrels = load_beir(tmp_path / "out").qrels["train"]
    assert qrels["q1"] == qrels["q2"] != qrels["q4"]
    assert (summary.paragraphs, summary.merged_paragraphs, summary.documents) == (4, 1, 3)


def test_unanswerable_questions_are_dropped_and_counted(tmp_path: Path) -> None:
    context = "The sky is blue."
    questions = [
        qa("keep", "What colour is the sky?", span(context, "blue"), is_impossible=False),
        qa("impossible", "What colour is grass?", is_impossible=True, plausible_answers=[span(context, "blue")]),
        qa("flagged", "Flagged with an answer?", span(context, "sky"), is_impossible=True),
        qa("empty", "No answers?"),
        {"id": "missing", "question": "No answers field?"},
    ]
    source = write_squad(tmp_path / "s.json", [article("Sky", paragraph(context, *questions))])
    summary = build_squad_beir(source, tmp_path / "out", fractions=TRAIN_ONLY)
    assert (summary.questions, summary.unanswerable) == (1, 4)
    assert list(load_beir(tmp_path / "out").queries) == ["keep"]


def test_korean_text_is_written_unescaped(tmp_path: Path) -> None:
    context = "대한민국의 수도는 서울이다. 서울의 인구는 약 천만 명이다."
    source = write_squad(
        tmp_path / "s.json",
        [article("대한민국", paragraph(context, qa("한국-1", "대한민국의 수도는?", span(context, "서울"))))],
    )
    build_squad_beir(source, tmp_path / "out", fractions=TRAIN_ONLY)
    for name, expected in (("corpus.jsonl", context), ("queries.jsonl", "대한민국의 수도는?")):
        raw = (tmp_path / "out" / name).read_bytes()
        assert expected.encode("utf-8") in raw and "대한민국".encode() in raw
        assert b"\\u" not in raw
    assert (tmp_path / "out" / "qrels" / "train.tsv").read_bytes().splitlines()[1].startswith("한국-1\t".encode())
    assert load_beir(tmp_path / "out").queries == {"한국-1": "대한민국의 수도는?"}


def test_a_byte_order_mark_and_integer_ids_are_accepted(tmp_path: Path) -> None:
    document = {"data": [article("T", paragraph("Some text.", qa("x", "q?", "text")))]}
    document["data"][0]["paragraphs"][0]["qas"][0]["id"] = 17
    source = tmp_path / "bom.json"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(document).encode())
    build_squad_beir(source, tmp_path / "out", fractions=TRAIN_ONLY)
    assert list(load_beir(tmp_path / "out").queries) == ["17"]


def test_articles_are_split_without_overlap(tmp_path: Path) -> None:
    articles = many_articles(20)
    articles.append(article("Article 00", paragraph("A second entry of article zero.", qa("extra", "again?", "zero"))))
    source = write_squad(tmp_path / "s.json", articles)
    summary = build_squad_beir(source, tmp_path / "out")

    data = load_beir(tmp_path / "out")
    article_of = {
        query["_id"]: query["metadata"]["article"] for query in read_jsonl(tmp_path / "out" / "queries.jsonl")
    }
    split_articles_found = {split: {article_of[qid] for qid in qrels} for split, qrels in data.qrels.items()}
    assert set(split_articles_found) == {"train", "dev", "test"}
    train, dev, test = (split_articles_found[name] for name in ("train", "dev", "test"))
    assert not (train & dev or train & test or dev & test)
    assert train | dev | test == {f"Article {index:02d}" for index in range(20)}
    assert sum(len(qrels) for qrels in data.qrels.values()) == len(data.queries) == 41
    # 20 titles x (0.8, 0.1, 0.1)
    assert (len(train), len(dev), len(test)) == (16, 2, 2)
    assert summary.articles == 20
    for name, counts in summary.splits.items():
        judged = {doc for judgements in data.qrels[name].values() for doc in judgements}
        assert counts == SplitCounts(len(split_articles_found[name]), len(data.qrels[name]), len(judged))


def test_same_seed_gives_identical_bytes_and_another_seed_another_split(tmp_path: Path) -> None:
    source = write_squad(tmp_path / "s.json", many_articles(20))
    first, again, other = (tmp_path / name for name in ("first", "again", "other"))
    build_squad_beir(source, first, seed=7)
    build_squad_beir(source, again, seed=7)
    build_squad_beir(source, other, seed=8)
    assert folder_bytes(first) == folder_bytes(again)
    assert folder_bytes(first)["corpus.jsonl"] == folder_bytes(other)["corpus.jsonl"]
    assert load_beir(first).qrels != load_beir(other).qrels


def test_split_articles_is_deterministic_and_honours_zero_shares() -> None:
    titles = [f"t{index}" for index in range(10)]
    assignment = split_articles(titles, (0.6, 0.2, 0.2), seed=3)
    assert split_articles(list(reversed(titles)) + titles[:3], (0.6, 0.2, 0.2), seed=3) == assignment
    assert sorted(assignment.values()).count("test") == 2 and sorted(assignment.values()).count("dev") == 2
    assert set(split_articles(titles, (0, 0, 1), seed=3).values()) == {"test"}
    assert set(split_articles(titles, (0, 1, 0), seed=3).values()) == {"dev"}
    assert set(split_articles(titles, (0.5, 0.5, 0), seed=3).values()) == {"train", "dev"}
    assert set(split_articles(["only"], (1, 0, 0), seed=3).values()) == {"train"}


@pytest.mark.parametrize(
    "fractions",
    [(0.8, 0.1, 0.1), (0.1, 0.1, 0.8), (0.5, 0.5, 0.0), (0.0, 0.0, 1.0), (1 / 3, 1 / 3, 1 / 3), (0.7, 0.2, 0.1)],
)
def test_split_sizes_sum_to_the_count_and_fill_every_positive_share(fractions: tuple[float, float, float]) -> None:
    needed = sum(1 for share in fractions if share > 0)
    smallest = min(share for share in fractions if share > 0)
    for count in range(needed, 60):
        sizes = split_sizes(count, fractions)
        assert sum(sizes) == count
        for size, share in zip(sizes, fractions, strict=True):
            assert size >= 1 if share > 0 else size == 0
            if count * smallest >= 1:  # no split needed topping up: plain rounding, off by less than one
                assert abs(size - count * share) < 1
    with pytest.raises(ValueError, match=f"at least {needed} articles"):
        split_sizes(needed - 1, fractions)


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, -0.1), (0.5, 0.2, 0.2), (float("nan"), 0.5, 0.5)])
def test_split_articles_rejects_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_articles(["a", "b", "c", "d"], fractions, seed=1)


def test_too_few_articles_for_the_splits_is_a_data_error(tmp_path: Path) -> None:
    source = write_squad(tmp_path / "s.json", many_articles(2))
    with pytest.raises(DataError, match="at least 3 articles") as err:
        build_squad_beir(source, tmp_path / "out")
    assert (err.value.path, err.value.line, err.value.field) == (source, None, "data")
    assert not (tmp_path / "out").exists()


def test_split_sentences_for_english_and_korean() -> None:
    def sentences(text: str) -> list[str]:
        return [text[start:end] for start, end in split_sentences(text)]

    assert sentences('He said "Stop." Then left!  Why? It is 3.5 m long') == [
        'He said "Stop."',
        "Then left!",
        "Why?",
        "It is 3.5 m long",
    ]
    assert sentences("서울은 수도이다. 부산은 항구다.\n제목 없음") == [
        "서울은 수도이다.",
        "부산은 항구다.",
        "제목 없음",
    ]
    assert sentences("第一句。第二句。 ") == ["第一句。", "第二句。"]
    assert sentences("  ") == []


def test_locate_answer_falls_back_to_the_nearest_occurrence() -> None:
    original = "<script>var river;</script><p>river one. river two.</p>"
    cleaned = "river one. river two."
    start, end = locate_answer(original, cleaned, "river", original.index("river two"))
    assert (start, end) == (cleaned.index("river two"), cleaned.index("river two") + len("river"))
    assert locate_answer(original, cleaned, "lake", 0) is None
    assert locate_answer(original, cleaned, "river", None) == (0, 5)


def sentence_positives(tmp_path: Path, context: str, *answers: Any) -> tuple[list[str], Any]:
    """Build in answer-sentence mode; return the positive texts of question ``q`` and the summary."""
    questions = [qa("q", "question?", *answers), qa("other", "other?", "zzz-not-there")]
    source = write_squad(tmp_path / "s.json", [article("T", paragraph(context, *questions))])
    out = tmp_path / "out"
    summary = build_squad_beir(source, out, document="answer-sentence", fractions=TRAIN_ONLY)
    data = load_beir(out)
    texts = {record["_id"]: record["text"] for record in read_jsonl(out / "corpus.jsonl")}
    assert "other" not in data.queries  # its answer is not in the context
    return [texts[doc_id] for doc_id in data.qrels["train"]["q"]], summary


@pytest.mark.parametrize(
    ("context", "answer", "expected"),
    [
        ("Paris is in France. Berlin is in Germany! Is Rome in Italy? Yes.", "Berlin", "Berlin is in Germany!"),
        ("서울은 수도이다. 부산은 항구 도시이다. 대구는 내륙이다.", "부산", "부산은 항구 도시이다."),
        ("He met Dr. Smith yesterday. Then he left.", "Dr. Smith", "He met Dr. Smith yesterday."),
    ],
)
def test_answer_sentence_mode_picks_the_sentence_with_the_answer(
    tmp_path: Path, context: str, answer: str, expected: str
) -> None:
    positives, summary = sentence_positives(tmp_path, context, span(context, answer))
    assert positives == [expected]
    assert (summary.questions, summary.unlocated) == (1, 1)
    corpus = read_jsonl(tmp_path / "out" / "corpus.jsonl")
    assert {record["text"] for record in corpus} >= {context[a:b] for a, b in split_sentences(context)}


@pytest.mark.parametrize(
    "context",
    [
        "The river is long. The river is wide.",
        "<p>The <b>river</b>  is long.</p><p>The river is wide.</p>",
        # Markup after the answer: scaling the offset by the length ratio would point at the first "river".
        "<p>The river is long.</p><p>The river is wide.</p>" + f"<div class='{'x' * 300}'></div>",
    ],
)
def test_answer_sentence_mode_maps_the_answer_offset_through_cleaning(tmp_path: Path, context: str) -> None:
    positives, _ = sentence_positives(tmp_path, context, span(context, "river", occurrence=1))
    assert positives == ["The river is wide."]


def test_answer_sentence_mode_keeps_one_positive_per_distinct_sentence(tmp_path: Path) -> None:
    context = "Cats purr. Dogs bark. Cats sleep."
    answers = (span(context, "Cats"), span(context, "Cats", occurrence=1), span(context, "Cats"), "Dogs")
    positives, _ = sentence_positives(tmp_path, context, *answers)
    assert positives == ["Cats purr.", "Cats sleep.", "Dogs bark."]


VALID = {
    "data": [
        article("First", paragraph("Alpha text.", qa("a1", "alpha?", "Alpha"))),
        article(
            "Second",
            paragraph("Beta text.", qa("b1", "beta?", {"text": "Beta", "answer_start": 0})),
            paragraph("Gamma text.", qa("g1", "g1?", "Gamma"), qa("g2", "g2?", "text"), qa("g3", "g3?", "Gamma")),
        ),
    ]
}
QA = "data[1].paragraphs[1].qas[2]"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Return a mutation setting (``value`` is not ``...``) or deleting the value at a dotted JSON path."""

    def mutate(document: dict[str, Any]) -> None:
        keys: list[Any] = []
        for part in path.replace("]", "").replace("[", ".").split("."):
            keys.append(int(part) if part.isdigit() else part)
        target = document
        for key in keys[:-1]:
            target = target[key]
        if value is ...:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return mutate


def _all_unanswerable(document: dict[str, Any]) -> None:
    for entry in document["data"]:
        for para in entry["paragraphs"]:
            for question in para["qas"]:
                question["is_impossible"] = True


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set("data", ...), "data"),
        (_set("data", {"title": "x"}), "data"),
        (_set("data", []), "data"),
        (_set("data[1]", "an article"), "data[1]"),
        (_set("data[1].title", ...), "data[1].title"),
        (_set("data[1].title", 3), "data[1].title"),
        (_set("data[1].paragraphs", ...), "data[1].paragraphs"),
        (_set("data[1].paragraphs", "text"), "data[1].paragraphs"),
        (_set("data[1].paragraphs[1]", []), "data[1].paragraphs[1]"),
        (_set("data[1].paragraphs[1].context", ...), "data[1].paragraphs[1].context"),
        (_set("data[1].paragraphs[1].context", None), "data[1].paragraphs[1].context"),
        (_set("data[1].paragraphs[1].context", "<script>only()</script> <p> </p>"), "data[1].paragraphs[1].context"),
        (_set("data[1].paragraphs[1].qas", {}), "data[1].paragraphs[1].qas"),
        (_set(QA, 5), QA),
        (_set(f"{QA}.id", ...), f"{QA}.id"),
        (_set(f"{QA}.id", ["g3"]), f"{QA}.id"),
        (_set(f"{QA}.id", " "), f"{QA}.id"),
        (_set(f"{QA}.id", "g\t3"), f"{QA}.id"),
        (_set(f"{QA}.id", "a1"), f"{QA}.id"),
        (_set(f"{QA}.question", ...), f"{QA}.question"),
        (_set(f"{QA}.question", 42), f"{QA}.question"),
        (_set(f"{QA}.question", " \n "), f"{QA}.question"),
        (_set(f"{QA}.is_impossible", "no"), f"{QA}.is_impossible"),
        (_set(f"{QA}.answers", "Gamma"), f"{QA}.answers"),
        (_set(f"{QA}.answers[0]", 7), f"{QA}.answers[0]"),
        (_set(f"{QA}.answers[0]", ""), f"{QA}.answers[0]"),
        (_set(f"{QA}.answers[0]", {"answer_start": 0}), f"{QA}.answers[0].text"),
        (_set(f"{QA}.answers[0]", {"text": " ", "answer_start": 0}), f"{QA}.answers[0].text"),
        (_set(f"{QA}.answers[0]", {"text": "Gamma", "answer_start": "0"}), f"{QA}.answers[0].answer_start"),
        (_set(f"{QA}.answers[0]", {"text": "Gamma", "answer_start": True}), f"{QA}.answers[0].answer_start"),
        (_set(f"{QA}.answers[0]", {"text": "Gamma", "answer_start": -1}), f"{QA}.answers[0].answer_start"),
        (_set(f"{QA}.answers[0]", {"text": "Gamma", "answer_start": 11}), f"{QA}.answers[0].answer_start"),
        (_all_unanswerable, "data"),
    ],
)
def test_malformed_input_names_file_and_json_path(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    document = copy.deepcopy(VALID)
    mutate(document)
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(DataError) as err:
        build_squad_beir(source, tmp_path / "out", fractions=TRAIN_ONLY)
    assert (err.value.path, err.value.line, err.value.field) == (source, None, field)
    assert str(err.value).startswith(f"{source}: field '{field}': ")
    assert not (tmp_path / "out").exists()


def test_the_valid_document_of_the_error_cases_builds(tmp_path: Path) -> None:
    source = tmp_path / "good.json"
    source.write_text(json.dumps(VALID), encoding="utf-8")
    assert build_squad_beir(source, tmp_path / "out", fractions=TRAIN_ONLY).questions == 5


def test_a_duplicate_id_of_a_dropped_question_is_still_an_error(tmp_path: Path) -> None:
    document = copy.deepcopy(VALID)
    _set("data[0].paragraphs[0].qas[0].is_impossible", True)(document)
    _set(f"{QA}.id", "a1")(document)
    source = tmp_path / "dup.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(DataError, match="duplicate question id 'a1'.*data\\[0\\]") as err:
        build_squad_beir(source, tmp_path / "out", fractions=TRAIN_ONLY)
    assert err.value.field == f"{QA}.id"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        (b'{"data": [', "malformed JSON"),
        (b"\xff\xfe not utf-8", "not valid UTF-8"),
        (b'[{"title": "x"}]', "expected a JSON object with a 'data' array"),
        (b"", "malformed JSON"),
    ],
)
def test_unreadable_files_are_data_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    source = tmp_path / "input.json"
    if content is not None:
        source.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        build_squad_beir(source, tmp_path / "out")
    line = 1 if message == "malformed JSON" else None  # a decoding error names its line
    assert (err.value.path, err.value.line, err.value.field) == (source, line, None)
    assert not (tmp_path / "out").exists()


def test_a_json_error_past_the_first_line_names_its_line(tmp_path: Path) -> None:
    source = tmp_path / "input.json"
    source.write_text('{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}\n', encoding="utf-8")
    with pytest.raises(DataError, match="malformed JSON") as err:
        build_squad_beir(source, tmp_path / "out")
    assert err.value.line == 3 and str(err.value).startswith(f"{source}:3: ")


def test_korquad_dev_converts_with_counts_matching_the_file(tmp_path: Path) -> None:
    if not KORQUAD_DEV.is_file():
        pytest.skip(f"KorQuAD 1.0 dev file not found at {KORQUAD_DEV}")
    raw = json.loads(KORQUAD_DEV.read_text(encoding="utf-8"))["data"]
    titles = {entry["title"] for entry in raw}
    paragraphs = [(entry["title"], para) for entry in raw for para in entry["paragraphs"]]
    questions = [question for _, para in paragraphs for question in para["qas"]]
    answerable = [q for q in questions if q["answers"] and not q.get("is_impossible", False)]
    distinct = {(title, " ".join(para["context"].split())) for title, para in paragraphs}

    started = time.perf_counter()
    out = tmp_path / "korquad"
    summary = build_squad_beir(KORQUAD_DEV, out)
    assert time.perf_counter() - started < 20
    assert (summary.articles, summary.paragraphs) == (len(titles), len(paragraphs))
    assert (summary.questions, summary.unanswerable) == (len(answerable), len(questions) - len(answerable))
    assert (summary.documents, summary.merged_paragraphs) == (len(distinct), len(paragraphs) - len(distinct))

    data = load_beir(out)
    assert len(data.corpus) == summary.documents and len(data.queries) == len(answerable)
    assert sum(len(qrels) for qrels in data.qrels.values()) == len(answerable)
    split_titles = [
        {q["metadata"]["article"] for q in read_jsonl(out / "queries.jsonl") if q["_id"] in qrels}
        for qrels in data.qrels.values()
    ]
    assert sum(len(found) for found in split_titles) == len(set().union(*split_titles)) == len(titles)
    corpus_bytes = (out / "corpus.jsonl").read_bytes()
    assert raw[0]["title"].encode("utf-8") in corpus_bytes and b"\\u" not in corpus_bytes
    assert questions[0]["question"].encode("utf-8") in (out / "queries.jsonl").read_bytes()
    texts = {record["_id"]: record["text"] for record in read_jsonl(out / "corpus.jsonl")}
    answers = {question["id"]: question["answers"][0]["text"] for question in answerable}
    for qrels in data.qrels.values():
        for query_id, judgements in qrels.items():
            assert all(" ".join(answers[query_id].split()) in texts[doc_id] for doc_id in judgements)
