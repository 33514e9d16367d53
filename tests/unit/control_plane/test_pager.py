"""The pages' shared pager (templates/_pager.html): links on the same path to the pages
around this one, keeping a list's search and filters, escaped, and nothing for one page."""

from __future__ import annotations

import re

import jinja2

PAGER = '{% from "_pager.html" import pager %}{{ pager(number, pages, keep, *words) }}'


def render(number: int, pages: int, keep: dict[str, object], *words: str) -> str:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("control_plane.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = environment.from_string(PAGER)
    return template.render(number=number, pages=pages, keep=keep, words=words)


def links(html: str) -> dict[str, str]:
    return {text: href for href, text in re.findall(r'<a href="([^"]*)">([^<]*)</a>', html)}


def test_the_pages_around_this_one_keep_the_search() -> None:
    html = render(2, 3, {"q": "a&b <x>"})
    assert links(html) == {
        "Previous": "?q=a%26b+%3Cx%3E&amp;page=1",
        "Next": "?q=a%26b+%3Cx%3E&amp;page=3",
    }
    assert "Page 2 of 3" in html


def test_empty_values_are_left_out_and_the_words_can_change() -> None:
    html = render(1, 2, {"q": "", "actor": None, "action": "server."}, "Newer", "Older")
    assert links(html) == {"Older": "?action=server.&amp;page=2"}


def test_one_page_has_no_pager() -> None:
    assert render(1, 1, {}).strip() == ""
