"""Schedules of a server: cron-timed task lists, their tasks, their runs and "run now".

Whoever creates a schedule or last changes its tasks is the user it runs as (``runs_as``):
its tasks act with that user's permissions as they are at run time
(``control_plane/scheduling/tasks.py``), and that user must hold the permission of every task
when they save. Changing when it runs (``schedules.update``) or running it now changes no
one's authority: the tasks still act as ``runs_as``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from control_plane.api.routing import ApiRequest, ApiRoutes
from control_plane.db.models import Schedule, ScheduleTask
from control_plane.errors import Conflict, NotFound
from control_plane.keys import SCHEDULER
from control_plane.scheduling.tasks import task_permission
from control_plane.schemas.schedules import (
    RunList,
    RunOut,
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    ScheduleUpdate,
    TaskCreate,
    TaskIn,
    TaskList,
    TaskOut,
    TaskUpdate,
    task_payload,
)
from control_plane.services.schedules import store
from control_plane.services.schedules.store import MAX_TASKS, Claimed

routes = ApiRoutes("schedules")
ORIGIN = "/api/v1/servers/{server_id}/schedules"
ONE = ORIGIN + "/{schedule_id}"
MAX_SCHEDULES = 50
RUNS_SHOWN = 50


def _task_out(task: ScheduleTask) -> TaskOut:
    return TaskOut(
        id=task.id,
        position=task.position,
        action=task.action,
        delay_seconds=task.delay_seconds,
        continue_on_failure=task.continue_on_failure,
        **task.payload,
    )


async def _out(req: ApiRequest[Any, Any], schedule: Schedule) -> ScheduleOut:
    zone = await store.owner_zone(req.db, schedule.server_id)
    return ScheduleOut(
        id=schedule.id,
        name=schedule.name,
        cron=schedule.cron,
        timezone=zone.key,
        only_when_online=schedule.only_when_online,
        active=schedule.active,
        next_run_at=schedule.next_run_at,
        last_run_at=schedule.last_run_at,
        runs_as=schedule.creator_id,
        created_at=schedule.created_at,
        tasks=[_task_out(t) for t in await store.tasks_of(req.db, schedule.id)],
    )


def _allowed(req: ApiRequest[Any, Any], task: TaskIn) -> None:
    """The editor must hold the task's own permission (audited 403 otherwise)."""
    req.require(task_permission(task.action, task_payload(task)))


def _row(schedule_id: uuid.UUID, position: int, task: TaskIn) -> ScheduleTask:
    return ScheduleTask(
        id=uuid.uuid4(),
        schedule_id=schedule_id,
        position=position,
        action=task.action,
        payload=task_payload(task),
        delay_seconds=task.delay_seconds,
        continue_on_failure=task.continue_on_failure,
    )


async def _schedule(req: ApiRequest[Any, Any]) -> Schedule:
    return await store.get_schedule(req.db, req.server.id, req.uuid_param("schedule_id"))


def _audit_target(req: ApiRequest[Any, Any], schedule: Schedule) -> dict[str, Any]:
    return {
        "target_type": "server",
        "target_id": str(req.server.id),
        "details": {"schedule": str(schedule.id), "name": schedule.name},
    }


def _now(req: ApiRequest[Any, Any]) -> Any:
    return req.http.app[SCHEDULER].clock.now()


@routes.get(ORIGIN, summary="List the server's schedules", permission="schedules.read",
            response=ScheduleList)  # fmt: skip
async def list_schedules(req: ApiRequest[Any, Any]) -> ScheduleList:
    rows = await req.db.scalars(
        select(Schedule)
        .where(Schedule.server_id == req.server.id)
        .order_by(Schedule.created_at, Schedule.id)
    )
    return ScheduleList(data=[await _out(req, s) for s in rows])


@routes.post(ORIGIN, summary="Create a schedule (with up to 10 tasks)",
             permission="schedules.create", body=ScheduleCreate, response=ScheduleOut,
             status=201)  # fmt: skip
async def create_schedule(req: ApiRequest[ScheduleCreate, Any]) -> ScheduleOut:
    for task in req.body.tasks:
        _allowed(req, task)
    count = await req.db.scalar(
        select(func.count()).select_from(Schedule).where(Schedule.server_id == req.server.id)
    )
    if (count or 0) >= MAX_SCHEDULES:
        raise Conflict(f"a server may have {MAX_SCHEDULES} schedules; delete one first")
    schedule = Schedule(
        id=uuid.uuid4(),
        server_id=req.server.id,
        creator_id=req.me.user_id,
        name=req.body.name,
        cron=req.body.cron,
        only_when_online=req.body.only_when_online,
        active=req.body.active,
    )
    await store.reschedule(req.db, schedule, _now(req))
    req.db.add(schedule)
    await req.db.flush()
    req.db.add_all(_row(schedule.id, i, t) for i, t in enumerate(req.body.tasks))
    await req.db.flush()
    await req.audit("server.schedule.created", **_audit_target(req, schedule))
    return await _out(req, schedule)


@routes.get(ONE, summary="One schedule, its tasks and its next run",
            permission="schedules.read", response=ScheduleOut)  # fmt: skip
async def get_schedule(req: ApiRequest[Any, Any]) -> ScheduleOut:
    return await _out(req, await _schedule(req))


@routes.patch(ONE, summary="Change a schedule's name, timing or flags",
              permission="schedules.update", body=ScheduleUpdate, response=ScheduleOut)  # fmt: skip
async def update_schedule(req: ApiRequest[ScheduleUpdate, Any]) -> ScheduleOut:
    schedule = await _schedule(req)
    for name, value in req.body.model_dump(exclude_none=True).items():
        setattr(schedule, name, value)
    await store.reschedule(req.db, schedule, _now(req))
    await req.audit("server.schedule.updated", **_audit_target(req, schedule))
    return await _out(req, schedule)


@routes.delete(ONE, summary="Delete a schedule and its record of runs",
               permission="schedules.delete", status=204)  # fmt: skip
async def delete_schedule(req: ApiRequest[Any, Any]) -> None:
    schedule = await _schedule(req)
    await req.db.delete(schedule)
    await req.audit("server.schedule.deleted", **_audit_target(req, schedule))


@routes.get(ONE + "/tasks", summary="A schedule's tasks, in order",
            permission="schedules.read", response=TaskList)  # fmt: skip
async def list_tasks(req: ApiRequest[Any, Any]) -> TaskList:
    schedule = await _schedule(req)
    return TaskList(data=[_task_out(t) for t in await store.tasks_of(req.db, schedule.id)])


async def _take_over(req: ApiRequest[Any, Any], schedule: Schedule) -> None:
    """Who changes the tasks becomes the user the schedule runs as; they must hold the
    permission of every task it now has (audited 403 otherwise)."""
    for task in await store.tasks_of(req.db, schedule.id):
        req.require(task_permission(task.action, task.payload))
    schedule.creator_id = req.me.user_id


async def _renumber(req: ApiRequest[Any, Any], ordered: list[ScheduleTask]) -> None:
    """Number ``ordered`` 0, 1, … in two passes through negative numbers: positions are
    unique per schedule at every statement, whatever order the updates run in."""
    for index, task in enumerate(ordered):
        task.position = -1 - index
    await req.db.flush()
    for index, task in enumerate(ordered):
        task.position = index
    await req.db.flush()


async def _place(
    req: ApiRequest[Any, Any], schedule: Schedule, moved: ScheduleTask, position: int | None
) -> None:
    """Put ``moved`` at ``position`` (default: last) and number the tasks again."""
    others = [t for t in await store.tasks_of(req.db, schedule.id) if t.id != moved.id]
    at = len(others) if position is None else min(position, len(others))
    await _renumber(req, [*others[:at], moved, *others[at:]])
    await _take_over(req, schedule)


@routes.post(ONE + "/tasks", summary="Add a task (at most 10 per schedule)",
             permission="schedules.update", body=TaskCreate, response=TaskOut,
             status=201)  # fmt: skip
async def create_task(req: ApiRequest[TaskCreate, Any]) -> TaskOut:
    schedule = await _schedule(req)
    _allowed(req, req.body.task)
    existing = await store.tasks_of(req.db, schedule.id)
    if len(existing) >= MAX_TASKS:
        raise Conflict(f"a schedule has at most {MAX_TASKS} tasks")
    task = _row(schedule.id, -100, req.body.task)
    req.db.add(task)
    await req.db.flush()
    await _place(req, schedule, task, req.body.position)
    await req.audit("server.schedule.updated", **_audit_target(req, schedule))
    return _task_out(task)


async def _task(req: ApiRequest[Any, Any], schedule: Schedule) -> ScheduleTask:
    task = await req.db.get(ScheduleTask, req.uuid_param("task_id"))
    if task is None or task.schedule_id != schedule.id:
        raise NotFound("no such task")
    return task


@routes.get(ONE + "/tasks/{task_id}", summary="One task", permission="schedules.read",
            response=TaskOut)  # fmt: skip
async def get_task(req: ApiRequest[Any, Any]) -> TaskOut:
    return _task_out(await _task(req, await _schedule(req)))


@routes.patch(ONE + "/tasks/{task_id}", summary="Replace a task, or move it",
              permission="schedules.update", body=TaskUpdate, response=TaskOut)  # fmt: skip
async def update_task(req: ApiRequest[TaskUpdate, Any]) -> TaskOut:
    schedule = await _schedule(req)
    task = await _task(req, schedule)
    _allowed(req, req.body.task)
    new = req.body.task
    task.action, task.payload = new.action, task_payload(new)
    task.delay_seconds, task.continue_on_failure = new.delay_seconds, new.continue_on_failure
    await _place(
        req, schedule, task, task.position if req.body.position is None else req.body.position
    )
    await req.audit("server.schedule.updated", **_audit_target(req, schedule))
    return _task_out(task)


@routes.delete(ONE + "/tasks/{task_id}", summary="Remove a task",
               permission="schedules.update", status=204)  # fmt: skip
async def delete_task(req: ApiRequest[Any, Any]) -> None:
    schedule = await _schedule(req)
    task = await _task(req, schedule)
    await req.db.delete(task)
    await req.db.flush()
    await _renumber(req, await store.tasks_of(req.db, schedule.id))
    await _take_over(req, schedule)
    await req.audit("server.schedule.updated", **_audit_target(req, schedule))


@routes.post(ONE + "/run", summary="Run the schedule now (its tasks as they are)",
             permission="schedules.update", response=RunOut, status=202,
             rate_limit="power")  # fmt: skip
async def run_now(req: ApiRequest[Any, Any]) -> RunOut:
    schedule = await _schedule(req)
    scheduler = req.http.app[SCHEDULER]
    run = await store.start_run(
        req.db,
        schedule,
        trigger="manual",
        now=scheduler.clock.now(),
        holder=scheduler.holder,
        lease=scheduler.lease,
    )
    if run.status != "running":
        raise Conflict(f"not started: {run.reason}")
    claimed = Claimed(run.id, schedule.id)

    async def launch() -> None:
        scheduler.launch(claimed)

    req.after_commit(launch)
    await req.audit("server.schedule.run", **_audit_target(req, schedule))
    return RunOut.model_validate(run)


@routes.get(ONE + "/runs", summary="The schedule's last runs, newest first, with each "
            "task's outcome", permission="schedules.read", response=RunList)  # fmt: skip
async def list_runs(req: ApiRequest[Any, Any]) -> RunList:
    schedule = await _schedule(req)
    runs = await store.runs_of(req.db, schedule.id, RUNS_SHOWN)
    return RunList(data=[RunOut.model_validate(r) for r in runs])
