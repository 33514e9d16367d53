"""Reading what an agent's refusal and its time say: a hostile or old agent's headers and
bodies are never believed beyond what they can mean."""

from __future__ import annotations

import pytest

from control_plane.nodes.clock import NodeClockSkewed, describe_offset, measure, refused
from shared.errors import ErrorDetail
from shared.refusals import Refusal, detail, parse_node_time, read


@pytest.mark.parametrize(
    "value", [None, "", "soon", "nan", "inf", "-5", "0", "1e300", "9" * 40, "1.5e11"]
)
def test_a_node_time_that_cannot_be_a_time_is_ignored(value: str | None) -> None:
    assert parse_node_time(value) is None


def test_the_offset_is_taken_against_the_middle_of_the_round_trip() -> None:
    headers = {"Stellar-Node-Time": "1090.000"}
    assert measure(headers, sent_at=999.0, received_at=1001.0) == pytest.approx(90.0)
    assert measure({}, sent_at=999.0, received_at=1001.0) is None


@pytest.mark.parametrize(
    ("offset", "said"),
    [(90.2, "90 s ahead of"), (-90.4, "90 s behind"), (0.34, "0.3 s ahead of")],
)
def test_the_offset_is_said_plainly(offset: float, said: str) -> None:
    assert describe_offset(offset) == said


def test_a_category_is_read_only_from_its_own_detail() -> None:
    assert read([detail(Refusal.EXPIRED)]) is Refusal.EXPIRED
    assert read([ErrorDetail(loc=["authorization"], msg="x", type="teapot")]) is None
    assert read([ErrorDetail(loc=["body"], msg="expired", type="expired")]) is None
    assert read([]) is None


def test_each_refusal_reads_as_what_it_is() -> None:
    ahead = refused("n1", Refusal.EXPIRED, "kid-1", 90.0)
    assert isinstance(ahead, NodeClockSkewed)
    assert ahead.offset == 90.0
    assert "as expired: its clock is 90 s ahead of the control plane's" in ahead.message
    unknown = refused("n1", Refusal.NOT_YET_VALID, "kid-1", None)
    assert "its clock and the control plane's disagree" in unknown.message
    # An agent from before categories, or an untrusted key: the key is the common cause.
    for refusal in (None, Refusal.UNTRUSTED):
        error = refused("n1", refusal, "kid-1", None)
        assert not isinstance(error, NodeClockSkewed)
        assert "does its config trust key kid-1?" in error.message
    assert "replayed" in refused("n1", Refusal.REPLAYED, "kid-1", None).message
