"""Schedules, their tasks and runs, as the API takes and shows them.

A task is one of four actions, told apart by ``action``; its fields are checked by the same
rules as the action's own API (a console line as ``POST /command``, a power action as
``POST /power``), at save time and again before it runs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_validator

from control_plane.schemas.common import Input, Output
from control_plane.services.schedules import cron
from shared.server_spec import CONSOLE_TEXT

MAX_DELAY_SECONDS = 900


class _TaskBase(Input):
    delay_seconds: int = Field(
        0, ge=0, le=MAX_DELAY_SECONDS, description="wait this long before the task"
    )
    continue_on_failure: bool = Field(False, description="go on with the next task if it fails")


class CommandTask(_TaskBase):
    action: Literal["command"]
    command: str = Field(min_length=1, max_length=1024, pattern=CONSOLE_TEXT)


class PowerTask(_TaskBase):
    action: Literal["power"]
    power: Literal["start", "stop", "restart", "kill"]


class BackupTask(_TaskBase):
    action: Literal["backup"]
    ignore: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=1000
    )


class DeleteBackupsTask(_TaskBase):
    action: Literal["delete_backups"]
    keep: int = Field(ge=0, le=1000, description="the newest finished backups to keep")


TaskIn = Annotated[
    CommandTask | PowerTask | BackupTask | DeleteBackupsTask, Field(discriminator="action")
]
_TASK = TypeAdapter(TaskIn)
_COMMON = {"action", "delay_seconds", "continue_on_failure"}


def task_payload(task: CommandTask | PowerTask | BackupTask | DeleteBackupsTask) -> dict[str, Any]:
    """The action's own fields, as stored."""
    return task.model_dump(exclude=_COMMON)


def task_input(
    action: str, payload: dict[str, Any]
) -> CommandTask | PowerTask | BackupTask | DeleteBackupsTask:
    """A stored task, checked again by the input rules."""
    return _TASK.validate_python({**payload, "action": action})


class TaskCreate(Input):
    """A task, inserted at ``position`` (0 = first; default: last)."""

    task: TaskIn
    position: int | None = Field(None, ge=0, lt=10)


class TaskUpdate(Input):
    """Replace a task's action and settings, and optionally move it."""

    task: TaskIn
    position: int | None = Field(None, ge=0, lt=10)


class _ScheduleFields(Input):
    @field_validator("cron", check_fields=False)
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else cron.validate(value)


class ScheduleCreate(_ScheduleFields):
    name: str = Field(min_length=1, max_length=64)
    cron: str = Field(
        min_length=9,
        max_length=128,
        description="five fields (minute hour day-of-month month day-of-week), in the time "
        "zone of the server's owner",
        examples=["30 4 * * *"],
    )
    only_when_online: bool = False
    active: bool = True
    tasks: list[TaskIn] = Field(default_factory=list, max_length=10)


class ScheduleUpdate(_ScheduleFields):
    name: str | None = Field(None, min_length=1, max_length=64)
    cron: str | None = Field(None, min_length=9, max_length=128)
    only_when_online: bool | None = None
    active: bool | None = None


class TaskOut(Output):
    id: uuid.UUID
    position: int
    action: str
    delay_seconds: int
    continue_on_failure: bool
    command: str | None = None
    power: str | None = None
    ignore: list[str] | None = None
    keep: int | None = None


class TaskList(Output):
    data: list[TaskOut]


class ScheduleOut(Output):
    id: uuid.UUID
    name: str
    cron: str
    timezone: str = Field(description="the server owner's time zone the expression runs in")
    only_when_online: bool
    active: bool
    next_run_at: dt.datetime | None
    last_run_at: dt.datetime | None
    runs_as: uuid.UUID = Field(description="the user whose permissions the tasks use")
    created_at: dt.datetime
    tasks: list[TaskOut]


class ScheduleList(Output):
    data: list[ScheduleOut]


class OutcomeOut(Output):
    position: int
    action: str
    status: Literal["completed", "failed", "skipped"]
    reason: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class RunOut(Output):
    id: uuid.UUID
    trigger: str
    status: str
    reason: str | None
    scheduled_for: dt.datetime | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcomes: list[OutcomeOut]


class RunList(Output):
    data: list[RunOut]


class AccountSettings(Output):
    timezone: str


class AccountSettingsUpdate(Input):
    timezone: str = Field(min_length=1, max_length=64, examples=["Europe/Berlin"])

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        cron.zone(value)
        return value
