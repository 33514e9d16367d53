"""Egg import and export: the report of an import, the blueprints it made."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from control_plane.schemas.blueprints import BlueprintOut
from control_plane.schemas.common import Input, Output


class EggImportQuery(Input):
    # Enforce a variable whose rules we cannot translate as a plain string, instead of
    # refusing the egg.
    accept_unknown_rules: bool = False


class EggExportQuery(Input):
    format: Literal["ptdl_v2", "plcn_v3"] = "ptdl_v2"


class EggReportItem(Output):
    """What became of one part of an egg."""

    field: str
    outcome: Literal["mapped", "changed", "refused", "ignored"]
    detail: str


class EggImportResult(Output):
    blueprint: BlueprintOut
    # False: an existing blueprint (same egg uuid, or else same name) was updated.
    created: bool
    version: str = Field(description="the egg's meta.version")
    report: list[EggReportItem]


class EggImportOut(Output):
    data: list[EggImportResult]
