from __future__ import annotations

import pytest

from embedtune.data.html_text import html_to_text, normalize_whitespace


def test_plain_text_only_has_its_whitespace_normalised() -> None:
    text = "  First   line,\twith tabs.\n\n\n  Second\u00a0line  \r\n"
    assert html_to_text(text) == "First line, with tabs.\nSecond line"
    assert html_to_text(text) == normalize_whitespace(text)


@pytest.mark.parametrize(
    "text",
    [
        "월간 <말>지에 의해서도 국감스타 5인 중 하나로 뽑히었다.",  # Korean title brackets are no tags
        "이승기가 <추억 속의 그대>와 함께 리메이크하여",
        "fylla 퓔라 < *fullijan, and 1 < 2 > 0",
        "AT&amp;T and &lt;b&gt; stay as written in plain text",
        "인용 오류: <ref> 태그를 닫는 </ref> 태그가 없습니다",  # an unknown tag alone does not make HTML
    ],
)
def test_tag_like_plain_text_is_kept_as_written(text: str) -> None:
    assert html_to_text(text) == text


def test_tags_are_removed_and_inline_tags_add_no_space() -> None:
    assert html_to_text("<p>A <b>bold</b> word and <i>it</i>alic<span>s</span></p>") == "A bold word and italics"


def test_script_and_style_content_is_dropped() -> None:
    html = (
        "<html><head><style>p { color: red; } .x > .y {}</style>"
        '<script type="text/javascript">var s = "<p>not text</p>"; if (a < b) {}</script></head>'
        "<body><p>Kept text.</p><script>alert('x')</script><p>More.</p><script src='x.js'/></body></html>"
    )
    assert html_to_text(html) == "Kept text.\nMore."


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Tom &amp; Jerry</p>", "Tom & Jerry"),
        ("<p>1 &lt; 2 &gt; 0</p>", "1 < 2 > 0"),
        ("<p>no&nbsp;break&nbsp;&nbsp;space</p>", "no break space"),
        ("<p>&quot;quoted&quot; &#39;single&#39; &#x41;&#66;</p>", "\"quoted\" 'single' AB"),
        ("<p>caf&eacute; &copy; 2024</p>", "café © 2024"),
        ("<div>&lt;script&gt;alert(1)&lt;/script&gt;</div>", "<script>alert(1)</script>"),
    ],
)
def test_entities_are_decoded(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_block_tags_become_line_breaks_in_nested_markup() -> None:
    html = (
        "<div><h1>Title</h1><div><p>First <em>para<strong>graph</strong></em>.</p>"
        "<ul><li>one</li><li>two <a href='#'>link</a></li></ul>line<br>break<br/>again</div></div>"
    )
    assert html_to_text(html).split("\n") == ["Title", "First paragraph.", "one", "two link", "line", "break", "again"]


def test_line_breaks_in_html_source_are_spaces() -> None:
    html = "<p>First line\nof one\r\nparagraph.</p>\n\n<p>Second</p>"
    assert html_to_text(html) == "First line of one paragraph.\nSecond"


def test_table_rows_become_lines_and_cells_are_separated_by_spaces() -> None:
    html = "<table><tr><th>Name</th><th>Age</th></tr><tr><td>Kim</td><td>30</td></tr></table>"
    assert html_to_text(html) == "Name Age\nKim 30"


def test_comments_doctype_and_unknown_tags_inside_html_are_removed() -> None:
    html = "<!DOCTYPE html><!-- a comment --><p>Text<ref>[1]</ref> after</p><custom-tag>x</custom-tag>"
    assert html_to_text(html) == "Text[1] after\nx"


def test_a_comment_alone_marks_the_text_as_html() -> None:
    assert html_to_text("before<!-- hidden -->after &amp; more") == "beforeafter & more"


def test_korean_html_keeps_hangul() -> None:
    html = "<div class='mw'><p>대한민국의 <b>수도</b>는&nbsp;서울이다.</p><p>둘째 문단</p></div>"
    assert html_to_text(html) == "대한민국의 수도는 서울이다.\n둘째 문단"


def test_unclosed_tags_and_blank_markup() -> None:
    assert html_to_text("<p>open paragraph<div>inner") == "open paragraph\ninner"
    assert html_to_text("<p> </p><br><script>x</script>") == ""
    assert html_to_text("") == ""


def test_normalize_whitespace_collapses_runs_and_drops_blank_lines() -> None:
    assert normalize_whitespace("\n a \t b \n\n\u00a0\n c\u2028d ") == "a b\nc\nd"
