"""Warnings for a blueprint whose image's own command runs ``STARTUP`` (``image_command``).

Values reach such a game only as environment variables, but what the image's entrypoint does
with them is the image's: one that evaluates the template twice (``eval echo …`` and then
``eval`` again, or ``envsubst`` and then ``eval``) runs a value such as ``x; cmd`` as shell
code inside the game's container (docs/templates-lifecycle.md). A value users may edit is
then theirs to run code with: the import report warns of each one whose rules do not already
keep shell syntax out.
"""

from __future__ import annotations

import re
from typing import Any, Final

from control_plane.services.eggs.report import EggReport

# Characters no shell gives a meaning to: a value made only of these is text to any
# entrypoint, however often it evaluates it.
_PLAIN: Final = re.compile(r"[A-Za-z0-9._,:/=+@% -]*")
_PLAIN_TYPES: Final = frozenset({"integer", "number", "boolean"})
WARNING: Final = (
    "users may edit this value and the image's own command runs STARTUP: an image whose "
    "entrypoint evaluates it twice (eval echo … then eval, or envsubst then eval) runs a "
    "value such as 'x; cmd' as shell code in the game's container; if this image does, "
    "give the variable a rule that keeps shell syntax out (a regex such as "
    "^[A-Za-z0-9._ -]*$, or options) or make it not editable (docs/templates-lifecycle.md)"
)


def warn_editable_values(variables: Any, report: EggReport) -> None:
    """Warn of each user-editable variable whose rules let a value carry shell syntax."""
    for variable in variables if isinstance(variables, list) else []:
        if not isinstance(variable, dict) or not variable.get("user_editable"):
            continue
        if variable.get("type") in _PLAIN_TYPES:
            continue
        options = variable.get("options")
        if isinstance(options, list) and all(_PLAIN.fullmatch(str(o)) for o in options):
            continue
        report.warning(f"variables.{variable.get('env')}", WARNING)
