"""A blueprint variable's ``format``: what each one takes and the message when a value fails.

Each follows the Laravel rule of the same name (control_plane/services/eggs/rules.py
translates an egg's rules to these), on the text values a variable has:

- ``alpha``, ``alpha_num``, ``alpha_dash``: letters and marks (``\\pL\\pM``), with numbers
  (``\\pN``), with ``-`` and ``_``, of any script, as Laravel's ``/\\A[\\pL\\pM\\pN_-]+\\z/u``;
- ``digits``: the ASCII digits ``0`` to ``9`` only, as ``digits``/``digits_between``;
- ``ip``, ``ipv4``, ``ipv6``: an address as PHP's ``FILTER_VALIDATE_IP`` takes it (dotted
  IPv4 without leading zeros, IPv6 with ``::`` and an IPv4 tail, no zone ``%eth0``);
- ``lowercase``, ``uppercase``: the value is its own lower (upper) case;
- ``url``: an ``http://`` or ``https://`` URL with a host, no spaces or control characters.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

Format = Literal[
    "alpha",
    "alpha_num",
    "alpha_dash",
    "digits",
    "ip",
    "ipv4",
    "ipv6",
    "lowercase",
    "uppercase",
    "url",
]
FORMATS: Final[tuple[str, ...]] = get_args(Format)


def _categories(value: str, extra: str, categories: str) -> bool:
    return all(ch in extra or unicodedata.category(ch)[0] in categories for ch in value)


def is_alpha_dash(value: str) -> bool:
    """Laravel's ``alpha_dash``: letters, marks and numbers of any script, ``-`` and ``_``."""
    return _categories(value, "-_", "LMN")


def is_web_url(value: str) -> bool:
    """An ``http://`` or ``https://`` URL with a host, no spaces or control characters."""
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (reading it checks it: a port that is not a number raises)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def _ip(value: str, versions: tuple[int, ...]) -> bool:
    # Python takes a zone ("fe80::1%eth0") that PHP's filter refuses; PHP refuses
    # surrounding spaces too, which ipaddress already does.
    if "%" in value:
        return False
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return address.version in versions


_CHECKS: Final[dict[str, tuple[Callable[[str], bool], str]]] = {
    "alpha": (lambda v: _categories(v, "", "LM"), "may contain only letters"),
    "alpha_num": (lambda v: _categories(v, "", "LMN"), "may contain only letters and digits"),
    "alpha_dash": (is_alpha_dash, "may contain only letters, digits, - and _"),
    "digits": (lambda v: all("0" <= ch <= "9" for ch in v), "may contain only the digits 0-9"),
    "ip": (lambda v: _ip(v, (4, 6)), "must be an IP address"),
    "ipv4": (lambda v: _ip(v, (4,)), "must be an IPv4 address"),
    "ipv6": (lambda v: _ip(v, (6,)), "must be an IPv6 address"),
    "lowercase": (lambda v: v.lower() == v, "must not contain upper-case letters"),
    "uppercase": (lambda v: v.upper() == v, "must not contain lower-case letters"),
    "url": (is_web_url, "must be an http:// or https:// URL"),
}


def format_problem(form: str | None, value: str) -> str | None:
    """What is wrong with the non-empty ``value`` for the format ``form``, or None."""
    if form is None or form not in _CHECKS:
        return None
    check, problem = _CHECKS[form]
    return None if check(value) else problem
