"""An e-mail address is one mailbox: nothing a mail header reads as more recipients."""

from __future__ import annotations

import pytest

from control_plane.errors import InvalidRequest
from control_plane.services.users import normalise_email


@pytest.mark.parametrize(
    "given", ["Alice@Example.org", " bob.o'neil+games@mail.example.co.uk ", "x@xn--bcher-kva.de"]
)
def test_ordinary_addresses_are_kept_in_lower_case(given: str) -> None:
    assert normalise_email(given) == given.strip().lower()


@pytest.mark.parametrize(
    "given",
    [
        "victim@corp.example,attacker@evil.example",
        "victim@corp.example;attacker@evil.example",
        "Victim <attacker@evil.example>",
        '"a,b"@example.org',
        "a@example.org\r\nBcc: x@evil.example",
        "a(comment)@example.org",
        "a@@example.org",
        "a@example",
        "@example.org",
        "a..b@example.org",
        "a@-example.org",
        "a" * 250 + "@example.org",
    ],
)
def test_anything_else_is_refused(given: str) -> None:
    with pytest.raises(InvalidRequest):
        normalise_email(given)
