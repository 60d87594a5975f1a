"""Read and validate a SQuAD-format QA file (SQuAD v1.1/v2, KorQuAD 1.0, XQuAD) into plain records.

Schema: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
"answer_start"}], "is_impossible"?}]}]}]}``. Every problem is a :class:`~embedtune.errors.DataError` naming the
file and the JSON path of the bad value as the field, e.g. ``data[3].paragraphs[2].qas[0].question`` (the line is
``None``: the file is one JSON document).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.data.html_text import html_to_text, normalize_whitespace
from embedtune.errors import DataError, reading, shorten
from embedtune.io import json_type_name, parse_json, read_text

_ID_FORBIDDEN = ("\t", "\n", "\r")
"""Characters an id may not hold: they would break the ``qrels/*.tsv`` rows."""


@dataclass(frozen=True)
class SquadAnswer:
    """One answer of a question.

    Attributes:
        text: The answer text as given.
        start: Its character offset in the original (uncleaned) context, ``None`` for a plain-string answer.
    """

    text: str
    start: int | None


@dataclass
class SquadQuestion:
    """One answerable question.

    Attributes:
        id: The question id (an integer id is turned into its decimal string).
        text: The question, whitespace normalised.
        answers: Its answers, at least one.
    """

    id: str
    text: str
    answers: tuple[SquadAnswer, ...]


@dataclass
class SquadParagraph:
    """One paragraph and its answerable questions.

    Attributes:
        context: The context as given.
        text: The cleaned context (:func:`~embedtune.data.html_text.html_to_text`), never empty.
        questions: Its answerable questions, in file order.
    """

    context: str
    text: str
    questions: list[SquadQuestion] = field(default_factory=list)


@dataclass
class SquadArticle:
    """One ``data`` entry: an article title and its paragraphs.

    Attributes:
        title: The title, stripped.
        paragraphs: Its paragraphs, in file order.
    """

    title: str
    paragraphs: list[SquadParagraph] = field(default_factory=list)


@dataclass
class SquadFile:
    """A whole validated SQuAD-format file.

    Attributes:
        path: The file read.
        articles: Its ``data`` entries, in file order.
        unanswerable: Questions dropped as unanswerable (``is_impossible: true`` or no answers).
    """

    path: Path
    articles: list[SquadArticle]
    unanswerable: int = 0

    @property
    def questions(self) -> int:
        """Return the number of answerable questions kept."""
        return sum(len(paragraph.questions) for article in self.articles for paragraph in article.paragraphs)


class _Reader:
    """Walk the decoded JSON, checking every value; raises DataError at the first bad one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first_seen: dict[str, str] = {}
        self.unanswerable = 0

    def fail(self, where: str | None, message: str) -> DataError:
        return DataError(self.path, None, where, message)

    def get(self, record: dict[str, Any], key: str, where: str, kind: type, *, default: Any = ...) -> Any:
        """Return ``record[key]`` checked to be of JSON type ``kind`` (``default`` when missing and one is given)."""
        place = f"{where}.{key}" if where else key
        if key not in record:
            if default is ...:
                raise self.fail(place, "missing required field")
            return default
        value = record[key]
        if not isinstance(value, kind):  # bool is no str, list or dict, and int is never asked for
            expected = {str: "a string", list: "an array", dict: "an object", bool: "true or false"}[kind]
            raise self.fail(place, f"expected {expected}, got {json_type_name(value)}")
        return value

    def items(self, record: dict[str, Any], key: str, where: str, *, required: bool = True) -> list[tuple[str, Any]]:
        """Return ``(path, element)`` for each element of the array ``record[key]``; elements must be objects."""
        values = self.get(record, key, where, list, **({} if required else {"default": []}))
        place = f"{where}.{key}" if where else key
        pairs = [(f"{place}[{index}]", value) for index, value in enumerate(values)]
        for element_place, value in pairs:
            if not isinstance(value, dict):
                raise self.fail(element_place, f"expected an object, got {json_type_name(value)}")
        return pairs

    def read(self, document: Any) -> SquadFile:
        if not isinstance(document, dict):
            kind = json_type_name(document)
            raise self.fail(None, f"expected a JSON object with a 'data' array (SQuAD format), got {kind}")
        entries = self.items(document, "data", "")
        if not entries:
            raise self.fail("data", "no articles")
        articles = [self.article(place, entry) for place, entry in entries]
        return SquadFile(self.path, articles, self.unanswerable)

    def article(self, where: str, entry: dict[str, Any]) -> SquadArticle:
        title = self.get(entry, "title", where, str).strip()
        paragraphs = [self.paragraph(place, value) for place, value in self.items(entry, "paragraphs", where)]
        return SquadArticle(title, paragraphs)

    def paragraph(self, where: str, entry: dict[str, Any]) -> SquadParagraph:
        context = self.get(entry, "context", where, str)
        text = html_to_text(context)
        if not text:
            raise self.fail(f"{where}.context", "empty context (no text left once HTML and whitespace are removed)")
        paragraph = SquadParagraph(context, text)
        for place, qa in self.items(entry, "qas", where, required=False):
            question = self.question(place, qa, len(context))
            if question is None:
                self.unanswerable += 1
            else:
                paragraph.questions.append(question)
        return paragraph

    def question(self, where: str, qa: dict[str, Any], context_chars: int) -> SquadQuestion | None:
        """Return the checked question, or ``None`` when it is unanswerable (``is_impossible`` or no answers)."""
        question_id = self.question_id(where, qa)
        text = normalize_whitespace(self.get(qa, "question", where, str)).replace("\n", " ")
        if not text:
            raise self.fail(f"{where}.question", "empty question")
        impossible = self.get(qa, "is_impossible", where, bool, default=False)
        answer_places = self.get(qa, "answers", where, list, default=[])
        answers = tuple(
            self.answer(f"{where}.answers[{index}]", value, context_chars) for index, value in enumerate(answer_places)
        )
        if impossible or not answers:
            return None
        return SquadQuestion(question_id, text, answers)

    def question_id(self, where: str, qa: dict[str, Any]) -> str:
        place = f"{where}.id"
        if "id" not in qa:
            raise self.fail(place, "missing required field")
        value = qa["id"]
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.fail(place, f"expected a string, got {json_type_name(value)}")
        if not value.strip():
            raise self.fail(place, "empty id")
        if any(character in value for character in _ID_FORBIDDEN):
            raise self.fail(place, f"id {shorten(value)} holds a tab or line break")
        if value in self.first_seen:
            raise self.fail(place, f"duplicate question id {shorten(value)} (first seen at {self.first_seen[value]})")
        self.first_seen[value] = place
        return value

    def answer(self, where: str, value: Any, context_chars: int) -> SquadAnswer:
        if isinstance(value, str):
            text, start = value, None
        elif isinstance(value, dict):
            text = self.get(value, "text", where, str)
            start = value.get("answer_start")
            if start is not None and (not isinstance(start, int) or isinstance(start, bool)):
                raise self.fail(f"{where}.answer_start", f"expected an integer, got {json_type_name(start)}")
            if start is not None and not 0 <= start < context_chars:
                message = f"answer_start {start} is outside the context ({context_chars} characters)"
                raise self.fail(f"{where}.answer_start", message)
        else:
            raise self.fail(where, f"expected an object or a string, got {json_type_name(value)}")
        if not text.strip():
            raise self.fail(where if isinstance(value, str) else f"{where}.text", "empty answer")
        return SquadAnswer(text, start)


def read_squad(path: str | Path) -> SquadFile:
    """Read and validate a SQuAD-format JSON file.

    Contexts are cleaned with :func:`~embedtune.data.html_text.html_to_text`; questions have their whitespace
    normalised. Unanswerable questions (``is_impossible: true``, or an empty or missing ``answers``) are dropped and
    counted. A missing ``qas`` is an empty list; an integer question id is read as its decimal string.

    Args:
        path: The JSON file (UTF-8, a leading byte-order mark allowed).

    Returns:
        The validated file.

    Raises:
        DataError: naming the file and the JSON path of the bad value as the field (``line`` is ``None``): a missing
            or unreadable file, malformed JSON, no ``data`` array or an empty one, a value of the wrong type
            (``data[0].paragraphs[1].qas[2].question`` not a string...), a missing required field (``title``,
            ``paragraphs``, ``context``, ``id``, ``question``, an answer's ``text``), an empty question, answer or
            cleaned context, an empty id or one holding a tab or line break, a duplicate question id, or an
            ``answer_start`` that is not an integer inside the context.
    """
    path = Path(path)
    with reading(path):
        document = parse_json(read_text(path).removeprefix("\ufeff"), path, None)
        return _Reader(path).read(document)
