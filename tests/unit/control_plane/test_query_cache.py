"""Queries kept parsed per raw query text (``api.routing._parsed_query``): two queries that
decode to the same text but to different values each get their own parse."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from control_plane.api import routing
from control_plane.schemas.common import PageQuery


class SearchQuery(PageQuery):
    search: str = ""


def _parsed(path: str) -> SearchQuery:
    parsed = routing._parsed_query(SearchQuery, make_mocked_request("GET", path))
    assert isinstance(parsed, SearchQuery)
    return parsed


def test_each_raw_query_gets_its_own_parse() -> None:
    plus = _parsed("/api/v1/x?search=a%2Bb")
    percent = _parsed("/api/v1/x?search=a%%32Bb")  # decodes to the same text as the first
    assert plus.search == "a+b"
    assert percent.search == "a%2Bb"
    assert _parsed("/api/v1/x?search=a%2Bb") is plus  # kept


def test_what_is_kept_is_bounded() -> None:
    for n in range(routing.PARSED_QUERIES_KEPT + 10):
        assert _parsed(f"/api/v1/x?page={n + 1}").page == n + 1
        assert len(routing._PARSED_QUERIES) <= routing.PARSED_QUERIES_KEPT
