"""Turn HTML (scraped pages, KorQuAD 2 style contexts) into plain text with the standard library's HTML parser.

:func:`html_to_text` drops ``<script>``/``<style>`` content, decodes entities (``&amp;``, ``&lt;``, ``&nbsp;``...),
turns block elements (``p``, ``div``, ``br``, ``li``, ``tr``, ``h1``..``h6``, ``table``...) into line breaks and table
cells into spaces, and normalises whitespace. Text in which the parser finds no standard HTML element, comment or
doctype is plain text: it passes through unchanged except for whitespace normalisation, so ``<말>`` (Korean title
brackets), ``a < b``, ``AT&amp;T`` or a stray ``<ref>`` in a plain-text corpus are kept as written.
"""

from __future__ import annotations

from html.parser import HTMLParser

DROPPED_TAGS = frozenset({"script", "style"})
"""Elements whose content is not text and is dropped."""

BLOCK_TAGS = frozenset(
    "address article aside blockquote body br caption center dd details dialog dir div dl dt fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 head header hgroup hr html legend li main menu nav ol p pre section "
    "summary table tbody tfoot thead title tr ul".split()
)
"""Elements that start and end a line of text."""

CELL_TAGS = frozenset({"td", "th"})
"""Elements separated from their neighbours by a space."""

INLINE_TAGS = frozenset(
    "a abbr acronym area audio b base bdi bdo big button canvas cite code col colgroup data datalist del dfn em "
    "embed font i iframe img input ins kbd label link map mark meta meter nobr noscript object optgroup option "
    "output param picture progress q rp rt ruby s samp select small source span strike strong sub sup svg "
    "template textarea time tt u var video wbr".split()
)
"""Other standard HTML elements: they neither add nor remove text around them."""

HTML_TAGS = DROPPED_TAGS | BLOCK_TAGS | CELL_TAGS | INLINE_TAGS
"""Tag names that mark a text as HTML (unknown tags such as ``<ref>`` alone do not)."""

_LINE_BREAK = "\n"
_SOURCE_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))
"""Line breaks in HTML source are plain whitespace: only block elements break lines."""


def normalize_whitespace(text: str) -> str:
    """Collapse whitespace: each line's runs of whitespace become one space, lines are stripped, blank lines dropped.

    Args:
        text: Any text.

    Returns:
        The non-blank lines of ``text`` (split as :meth:`str.splitlines` does) joined by line breaks, each with every
        run of whitespace (no-break spaces and tabs included) replaced by one space; ``""`` for blank text.
    """
    lines = (" ".join(line.split()) for line in text.splitlines())
    return _LINE_BREAK.join(line for line in lines if line)


class _TextExtractor(HTMLParser):
    """Collect the text of an HTML fragment; records whether any real markup was seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.saw_markup = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, opening=True)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, opening=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_TAGS:  # <script/> has no content to skip
            self.saw_markup = True
        else:
            self._tag(tag, opening=True)

    def _tag(self, tag: str, opening: bool) -> None:
        if tag in HTML_TAGS:
            self.saw_markup = True
        if tag in DROPPED_TAGS:
            self.skip_depth = self.skip_depth + 1 if opening else max(0, self.skip_depth - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append(_LINE_BREAK)
        elif tag in CELL_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.parts.append(data.translate(_SOURCE_LINE_BREAKS))

    def handle_comment(self, data: str) -> None:
        self.saw_markup = True

    def handle_decl(self, decl: str) -> None:
        self.saw_markup = True

    def handle_pi(self, data: str) -> None:
        self.saw_markup = True


def html_to_text(text: str) -> str:
    """Convert an HTML fragment or page to plain text; plain text only has its whitespace normalised.

    Args:
        text: HTML or plain text.

    Returns:
        The text content: ``<script>``/``<style>`` content dropped, entities decoded, block elements as line breaks
        (line breaks in the HTML source count as spaces), table cells separated by spaces, unknown tags removed,
        whitespace normalised by :func:`normalize_whitespace`.
        When the parser finds no standard HTML tag, comment or doctype, ``normalize_whitespace(text)``: entities and
        tag-like text are then kept as written.
    """
    if "<" not in text:
        return normalize_whitespace(text)
    extractor = _TextExtractor()
    extractor.feed(text)
    extractor.close()
    if not extractor.saw_markup:
        return normalize_whitespace(text)
    return normalize_whitespace("".join(extractor.parts))
