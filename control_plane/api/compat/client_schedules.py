"""``/api/client/servers/{identifier}/schedules``: Pterodactyl's schedules and tasks, over
ours (``control_plane/api/schedules.py``): the same permission nodes, the rule that whoever
saves a task must hold its permission, the limits, the ``power`` rate limit on running one
now, and the audit records.

Pterodactyl's cron fields are joined into our five-field expression (read in the time zone
of the server's owner, as ours); a task's ``payload`` string becomes our action's field (a
command line, a power signal, or for a backup its ignore patterns, one a line), its
``time_offset`` our ``delay_seconds`` and its ``sequence_id`` (from 1) our position (from
0). Schedules and tasks are named by stable integers (``compat_id``, migration 0020).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from aiohttp import web
from pydantic import Field, ValidationError
from sqlalchemy import exists, select

from control_plane.api import schedules as native
from control_plane.api.compat.envelope import CompatObject, collection, item, timestamp
from control_plane.api.compat.errors import DisplayError
from control_plane.api.compat.ids import SCHEDULE_IDS
from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import Schedule, ScheduleRun, ScheduleTask
from control_plane.errors import Conflict, InvalidRequest
from control_plane.schemas.common import Input
from control_plane.schemas.schedules import (
    MAX_DELAY_SECONDS,
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    ScheduleUpdate,
    TaskCreate,
    TaskOut,
    TaskUpdate,
    task_input,
)
from control_plane.services.schedules import store
from shared.errors import ErrorDetail

routes = ApiRoutes("pterodactyl client", path_ids=SCHEDULE_IDS)
SCHEDULES = "/api/client/servers/{server_id}/schedules"
ONE = SCHEDULES + "/{schedule_id}"
TASK = ONE + "/tasks/{task_id}"
# One cron field: no spaces (they would shift the fields after it).
_CRON_FIELD: Final = Field(min_length=1, max_length=24, pattern=r"^\S+$")
# Our task fields → the field of Pterodactyl's task they come from.
_TASK_FIELDS: Final = {
    "command": "payload",
    "power": "payload",
    "ignore": "payload",
    "delay_seconds": "time_offset",
    "continue_on_failure": "continue_on_failure",
}


class InvalidCronError(DisplayError):
    """Pterodactyl answers an expression that never evaluates with a 400."""


class ServiceLimitExceeded(DisplayError):
    code = "ServiceLimitExceededException"


class CompatSchedule(Input):
    """Pterodactyl's schedule (create and update take all of it)."""

    name: str = Field(min_length=1, max_length=64)
    minute: str = _CRON_FIELD
    hour: str = _CRON_FIELD
    day_of_month: str = _CRON_FIELD
    month: str = Field("*", min_length=1, max_length=24, pattern=r"^\S+$")
    day_of_week: str = _CRON_FIELD
    # Pterodactyl reads a missing flag as false.
    is_active: bool = False
    only_when_online: bool = False

    @property
    def cron(self) -> str:
        return f"{self.minute} {self.hour} {self.day_of_month} {self.month} {self.day_of_week}"


class CompatTask(Input):
    action: Literal["command", "power", "backup"]
    payload: str | None = Field(None, max_length=65536)
    time_offset: int = Field(ge=0, le=MAX_DELAY_SECONDS)
    sequence_id: int | None = Field(None, ge=1, le=1000)
    continue_on_failure: bool = False


def _our_schedule(body: CompatSchedule, model: type[ScheduleCreate | ScheduleUpdate]) -> Any:
    fields = {
        "name": body.name,
        "cron": body.cron,
        "active": body.is_active,
        "only_when_online": body.only_when_online,
    }
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        raise InvalidCronError(
            "The cron data provided does not evaluate to a valid expression: "
            + "; ".join(e["msg"] for e in err.errors(include_input=False, include_url=False))
        ) from err


def _our_task(body: CompatTask) -> Any:
    """Our task for Pterodactyl's; a refusal names Pterodactyl's fields."""
    if body.payload is None and body.action != "backup":
        missing = ErrorDetail(loc=["payload"], msg="Field required", type="missing")
        raise InvalidRequest("invalid request body", details=[missing])
    payload = body.payload or ""
    fields: dict[str, Any] = {
        "delay_seconds": body.time_offset,
        "continue_on_failure": body.continue_on_failure,
    }
    if body.action == "command":
        fields["command"] = payload
    elif body.action == "power":
        fields["power"] = payload
    else:
        fields["ignore"] = [line.strip() for line in payload.splitlines() if line.strip()]
    try:
        return task_input(body.action, fields)
    except ValidationError as err:
        ours = InvalidRequest.from_validation(err, "invalid request body")
        raise InvalidRequest(
            "invalid request body",
            details=[
                ErrorDetail(loc=[_theirs(d.loc)], msg=d.msg, type=d.type) for d in ours.details
            ],
        ) from err


def _theirs(loc: list[str | int]) -> str:
    for part in loc:
        if isinstance(part, str) and part in _TASK_FIELDS:
            return _TASK_FIELDS[part]
    return "payload"


def _payload(task: ScheduleTask) -> str:
    stored = task.payload
    if task.action == "command":
        return str(stored.get("command", ""))
    if task.action == "power":
        return str(stored.get("power", ""))
    if task.action == "backup":
        return "\n".join(stored.get("ignore", []))
    # Ours only (delete_backups): the number of backups it keeps.
    return str(stored.get("keep", ""))


def _task_attributes(task: ScheduleTask, schedule: Schedule) -> dict[str, Any]:
    # Tasks keep no times of their own: the schedule's creation stands for both.
    made = timestamp(schedule.created_at)
    return {
        "id": task.compat_id,
        "sequence_id": task.position + 1,
        "action": task.action,
        "payload": _payload(task),
        "time_offset": task.delay_seconds,
        "is_queued": False,
        "continue_on_failure": task.continue_on_failure,
        "created_at": made,
        "updated_at": made,
    }


async def _schedule_object(req: ApiRequest[Any, Any], schedule: Schedule) -> dict[str, Any]:
    tasks = await store.tasks_of(req.db, schedule.id)
    processing = await req.db.scalar(
        select(
            exists().where(ScheduleRun.schedule_id == schedule.id, ScheduleRun.status == "running")
        )
    )
    minute, hour, day_of_month, month, day_of_week = schedule.cron.split()
    return item(
        "server_schedule",
        {
            "id": schedule.compat_id,
            "name": schedule.name,
            "cron": {
                "day_of_week": day_of_week,
                "day_of_month": day_of_month,
                "month": month,
                "hour": hour,
                "minute": minute,
            },
            "is_active": schedule.active,
            "is_processing": bool(processing),
            "only_when_online": schedule.only_when_online,
            "last_run_at": timestamp(schedule.last_run_at),
            "next_run_at": timestamp(schedule.next_run_at),
            "created_at": timestamp(schedule.created_at),
            # Not kept here: the creation time stands for it.
            "updated_at": timestamp(schedule.created_at),
        },
        tasks=collection("schedule_task", [_task_attributes(t, schedule) for t in tasks]),
    )


async def _row(req: ApiRequest[Any, Any], shown: object) -> Schedule:
    """The row our route answered with (our routes' answers are typed as any result)."""
    assert isinstance(shown, ScheduleOut)
    schedule = await req.db.get(Schedule, shown.id)
    assert schedule is not None
    return schedule


@routes.get(SCHEDULES, summary="Pterodactyl: the server's schedules with their tasks",
            permission="schedules.read", response=CompatObject)  # fmt: skip
async def list_schedules(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    listed = await native.list_schedules(req)
    assert isinstance(listed, ScheduleList)
    rows = [await _row(req, s) for s in listed.data]
    return {"object": "list", "data": [await _schedule_object(req, s) for s in rows]}


@routes.post(SCHEDULES, summary="Pterodactyl: create a schedule (tasks are added one by one)",
             permission="schedules.create", body=CompatSchedule, response=CompatObject)  # fmt: skip
async def create_schedule(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    req.body = _our_schedule(req.body, ScheduleCreate)
    made = await native.create_schedule(req)
    return await _schedule_object(req, await _row(req, made))


@routes.get(ONE, summary="Pterodactyl: one schedule with its tasks",
            permission="schedules.read", response=CompatObject)  # fmt: skip
async def get_schedule(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    shown = await native.get_schedule(req)
    return await _schedule_object(req, await _row(req, shown))


@routes.post(ONE, summary="Pterodactyl: change a schedule (all its fields)",
             permission="schedules.update", body=CompatSchedule, response=CompatObject)  # fmt: skip
async def update_schedule(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    req.body = _our_schedule(req.body, ScheduleUpdate)
    changed = await native.update_schedule(req)
    return await _schedule_object(req, await _row(req, changed))


@routes.delete(ONE, summary="Pterodactyl: delete a schedule",
               permission="schedules.delete", status=204)  # fmt: skip
async def delete_schedule(req: ApiRequest[Any, Any]) -> None:
    await native.delete_schedule(req)


@routes.post(ONE + "/execute", summary="Pterodactyl: run the schedule now (202)",
             permission="schedules.update", status=202, rate_limit="power")  # fmt: skip
async def execute_schedule(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    await native.run_now(req)
    # Pterodactyl's answer is an empty JSON array.
    return web.json_response([], status=202)


@routes.post(ONE + "/tasks", summary="Pterodactyl: add a task (at most 10 per schedule)",
             permission="schedules.update", body=CompatTask, response=CompatObject)  # fmt: skip
async def create_task(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: CompatTask = req.body
    position = None if body.sequence_id is None else min(body.sequence_id - 1, 9)
    req.body = TaskCreate(task=_our_task(body), position=position)
    try:
        made = await native.create_task(req)
    except Conflict as err:
        # The only conflict here is the task limit: Pterodactyl's 400.
        raise ServiceLimitExceeded(err.message) from err
    return await _task_object(req, made)


async def _task_object(req: ApiRequest[Any, Any], shown: object) -> dict[str, Any]:
    assert isinstance(shown, TaskOut)
    task = await req.db.get(ScheduleTask, shown.id)
    assert task is not None
    schedule = await req.db.get(Schedule, task.schedule_id)
    assert schedule is not None
    return item("schedule_task", _task_attributes(task, schedule))


@routes.post(TASK, summary="Pterodactyl: replace a task, or move it",
             permission="schedules.update", body=CompatTask, response=CompatObject)  # fmt: skip
async def update_task(req: ApiRequest[Any, Any]) -> dict[str, Any]:
    body: CompatTask = req.body
    position = None if body.sequence_id is None else min(body.sequence_id - 1, 9)
    req.body = TaskUpdate(task=_our_task(body), position=position)
    return await _task_object(req, await native.update_task(req))


@routes.delete(TASK, summary="Pterodactyl: remove a task",
               permission="schedules.update", status=204)  # fmt: skip
async def delete_task(req: ApiRequest[Any, Any]) -> None:
    await native.delete_task(req)
