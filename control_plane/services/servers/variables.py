"""A server's variable values under its blueprint's rules."""

from __future__ import annotations

import time

from control_plane.db.models import Blueprint
from control_plane.errors import InvalidRequest
from control_plane.schemas.variable_values import (
    CHECKS_BUDGET_SECONDS,
    MATCH_TIMEOUT_SECONDS,
    value_problem,
)
from shared.errors import ErrorDetail


def _detail(field: str, message: str) -> ErrorDetail:
    return ErrorDetail(loc=["variables", field], msg=message, type="value_error")


def validate_variables(
    blueprint: Blueprint, given: dict[str, str], *, current: dict[str, str], user: bool
) -> dict[str, str]:
    """Merge ``given`` into ``current`` (or the defaults) under the blueprint's rules.

    With ``user``, only user-editable variables may be set, and a problem with a variable
    users may not see is reported without its name or rule (they cannot fix it, and its
    rule says something of its value). Every other problem is reported with its name.
    """
    spec = {v["env"]: v for v in blueprint.variables}
    problems: list[ErrorDetail] = []
    values = {env: current.get(env, str(v.get("default", ""))) for env, v in spec.items()}
    for env, value in given.items():
        variable = spec.get(env)
        if variable is None or (user and not variable.get("user_editable")):
            problems.append(_detail(env, "no such variable, or not editable"))
            continue
        values[env] = value
    hidden_problem = False
    # Patterns run on the event loop: a blueprint full of runaway ones still gets one budget.
    deadline = time.monotonic() + CHECKS_BUDGET_SECONDS
    for env, variable in spec.items():
        left = max(deadline - time.monotonic(), 0.001)
        problem = value_problem(variable, values[env], timeout=min(left, MATCH_TIMEOUT_SECONDS))
        if problem is None:
            continue
        if user and not variable.get("user_viewable"):
            hidden_problem = True
        else:
            problems.append(_detail(env, problem))
    if hidden_problem:
        problems.append(
            ErrorDetail(
                loc=["variables"],
                msg="a variable only administrators see is not valid: ask an administrator",
                type="value_error",
            )
        )
    if problems:
        raise InvalidRequest("invalid variables", details=problems)
    return values
