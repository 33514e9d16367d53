"""The agent's refusal reasons are labels: their variable part is cut off."""

from __future__ import annotations

import pytest

from node_agent.metrics import refusal_reason


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("expired", "expired"),
        ("wrong act", "wrong act"),
        ("missing claim jti", "missing claim"),
        ("unreadable header: Invalid header padding", "unreadable"),
        ("malformed claims: exp, iat", "malformed claims"),
    ],
)
def test_refusal_reasons_are_bounded_labels(reason: str, label: str) -> None:
    assert refusal_reason(reason) == label
