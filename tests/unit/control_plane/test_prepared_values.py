"""Quicker conversions of values read, with the same results: JSON read by orjson, and by
the standard library where orjson refuses (``db.json_values``); ids and times kept by their
text in the prepared reads, bounded (``db.prepared._faster``)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import JSON, Uuid

from control_plane.db import json_values, prepared
from control_plane.db.engine import create_engine
from control_plane.db.models.base import UTCDateTime

DIALECT = sqlalchemy.create_engine("sqlite+pysqlite://").dialect


def _both(column_type: sqlalchemy.types.TypeEngine[Any]) -> tuple[object, object]:
    own = column_type.dialect_impl(DIALECT).result_processor(DIALECT, None)
    assert own is not None
    return own, prepared._faster(column_type, own)


def test_stored_json_reads_as_the_standard_library_reads_it(tmp_path: Path) -> None:
    texts = [
        '["read", "write"]',
        "{}",
        '{"a": [1, 2.5, null, "x"]}',
        # orjson refuses these, or reads them otherwise (integers past 64 bits as floats)
        str(2**64 + 1),
        str(-(2**63) - 1),
        '{"id": 123456789012345678901234567890}',
        '"\\ud800"',
        "1e400",
        "NaN",
    ]
    for text in texts:
        got, expected = json_values.loads(text), json.loads(text)
        assert repr(got) == repr(expected)  # the same value, of the same type
        assert repr(json_values.loads(text.encode())) == repr(expected)
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert engine.dialect._json_deserializer is json_values.loads
    own, faster = _both(JSON())
    assert faster is own  # the engine's parser already; lists and objects are not kept


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
