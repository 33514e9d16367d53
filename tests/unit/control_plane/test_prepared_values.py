"""The prepared reads' quicker conversions give SQLAlchemy's values (``db.prepared._faster``):
JSON text that orjson refuses goes to SQLAlchemy's own parser, kept values are bounded."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import sqlalchemy
from sqlalchemy import JSON, Uuid

from control_plane.db import prepared
from control_plane.db.models.base import UTCDateTime

DIALECT = sqlalchemy.create_engine("sqlite+pysqlite://").dialect


def _both(column_type: sqlalchemy.types.TypeEngine[Any]) -> tuple[object, object]:
    own = column_type.dialect_impl(DIALECT).result_processor(DIALECT, None)
    assert own is not None
    return own, prepared._faster(column_type, own)


def test_json_orjson_refuses_is_parsed_as_sqlalchemy_parses_it() -> None:
    own, faster = _both(JSON())
    assert callable(own)
    assert callable(faster)
    for text in ('["read", "write"]', "{}", '{"a": [1, 2.5, null]}', str(2**70), '"\\ud800"'):
        assert faster(text) == own(text)
    assert math.isnan(faster("NaN"))  # json's extension, orjson's error
    assert faster(7) == own(7) == 7  # a number SQLite stored as a number
    assert faster(None) is None


def test_ids_and_times_are_kept_by_their_text_and_bounded() -> None:
    _, uuids = _both(Uuid())
    assert callable(uuids)
    text = uuid.uuid4().hex
    first = uuids(text)
    assert first == uuid.UUID(text)
    assert uuids(text) is first
    for _ in range(prepared.MEMO_SIZE + 10):
        uuids(uuid.uuid4().hex)
    assert uuids(text) == first
    own, times = _both(UTCDateTime())
    assert callable(own)
    assert callable(times)
    stamp = "2026-12-06 01:17:21.123456"
    assert times(stamp) == own(stamp) == dt.datetime(2026, 12, 6, 1, 17, 21, 123456, dt.UTC)
    assert times(None) is None
