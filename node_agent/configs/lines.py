"""The ``file`` parser: every line that starts with a rule's ``match`` becomes its value.

Wings' line-prefix semantics: the whole line is replaced (``bind = `` ->
``bind = "0.0.0.0:25565"``), on every line that starts with the prefix. Rules apply in
order, each to the line as the rules before it left it. With ``if_value`` the line must equal
it, or, for ``regex:``, the expression's matches in the line are replaced. Line endings are
kept; nothing is ever added to the file.
"""

from __future__ import annotations

from collections.abc import Sequence

from node_agent.configs.rules import Problems, Rule, attempt


def edit_lines(data: bytes, rules: Sequence[Rule], problems: Problems) -> bytes:
    """Apply ``rules`` to a text file line by line."""
    text = data.decode("utf-8", "surrogateescape")
    out: list[str] = []
    changed = False
    for raw in text.splitlines(keepends=True):
        line = raw.rstrip("\r\n")
        ending = raw[len(line) :]
        for rule in rules:
            if line.startswith(rule.match):
                value = attempt(rule, line, problems)
                if value is not None and value != line:
                    line, changed = value, True
        out.append(line + ending)
    if not changed:
        return data
    return "".join(out).encode("utf-8", "surrogateescape")
