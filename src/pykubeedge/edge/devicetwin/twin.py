"""Twin requests (upstream ``dtmanager/twin.go``): ``twin/update``, ``twin/cloud_updated``,
``twin/get``, and the cloud's desired values (PROJECT, from the Device object).

For an update DeviceTwin publishes, in upstream's order, ``/twin/update/result`` (always,
with an error result on bad input), ``/twin/update/document`` (when something changed) and
``/twin/update/delta`` (when an expected value differs from the actual one), and owes the
cloud the change (``edge_updated``). Error results go to the device's own result topic (upstream
sends parse errors to ``$hw/events/device//twin/update/result``).

    await twin_update(ctx, "default/thermo", payload, Deal.REST)
    await twin_get(ctx, "default/thermo", payload)
"""

from __future__ import annotations

import logging

from pykubeedge.core.topics import (
    TWIN_GET_RESULT,
    TWIN_UPDATE_DELTA,
    TWIN_UPDATE_DOCUMENT,
    device_topic,
    twin_update_result,
)
from pykubeedge.core.twin import (
    CONFLICT,
    NOT_FOUND,
    REASON_NO_DEVICE,
    Deal,
    Desired,
    TwinChange,
    TwinError,
    apply_desired,
    apply_twin_update,
    delta_payload,
    document_payload,
    error_payload,
    get_payload,
    parse_base,
    parse_twin_update,
    result_payload,
)
from pykubeedge.edge.devicetwin.context import TwinContext

log = logging.getLogger(__name__)


async def twin_update(ctx: TwinContext, device_id: str, payload: str | bytes, deal: Deal) -> None:
    topic = twin_update_result(device_id)
    try:
        request = parse_twin_update(payload, ctx.max_payload)
    except TwinError as err:
        await ctx.publish_error(topic, err.event_id, err.code, err.reason)
        return
    record = ctx.devices.get(device_id)
    if record is None:
        await ctx.publish_error(topic, request.event_id, NOT_FOUND, REASON_NO_DEVICE)
        return
    now = ctx.wall_ms()
    try:
        change = apply_twin_update(record.twins, request.twin, deal, now)
    except TwinError as err:
        await ctx.publish_error(topic, request.event_id, err.code, err.reason)
        return
    await _commit(ctx, device_id, change, event_id=request.event_id, now=now, deal=deal)


async def _commit(ctx: TwinContext, device_id: str, change: TwinChange, *, event_id: str,
                  now: int, deal: Deal | None) -> None:
    """Swap the change in, store it with what the cloud is owed, then publish."""
    record = ctx.devices[device_id]
    record.twins.update(change.twins)
    ops = []
    if change.twins:
        ops.append(ctx.dao.put_twins(device_id, change.twins))
    if change.sync:
        ops.append(ctx.dao.put_pending(ctx.cloud.add_twins(device_id, change.sync)))
    result = result_payload(event_id, now, change.result) if deal is Deal.REST else None
    document = (document_payload(event_id, now, change.document) if change.document else None)
    delta = delta_payload(ctx.new_id(), now, record.twins)
    conflicts = dict(change.conflicts)
    owes = bool(change.sync)

    async def then() -> None:
        topic = twin_update_result(device_id)
        if result is not None:
            await ctx.publish(topic, result)
        if conflicts:  # PROJECT: upstream only tells the cloud
            key, reason = next(iter(sorted(conflicts.items())))
            await ctx.publish(topic, error_payload(event_id, now, CONFLICT,
                                                   f"twin {key}: {reason}"))
        if document is not None:
            await ctx.publish(device_topic(device_id, TWIN_UPDATE_DOCUMENT), document)
        if delta is not None:
            await ctx.publish(device_topic(device_id, TWIN_UPDATE_DELTA), delta)
        if owes:
            ctx.cloud.mark_ready(device_id)
            ctx.wake_sync()

    await ctx.store(ops, then=then, error_topic=twin_update_result(device_id),
                    event_id=event_id, touched=[device_id])


async def twin_get(ctx: TwinContext, device_id: str, payload: str | bytes) -> None:
    topic = device_topic(device_id, TWIN_GET_RESULT)
    try:
        request = parse_base(payload, ctx.max_payload)
    except TwinError as err:
        await ctx.publish_error(topic, err.event_id, err.code,
                                f"Unmarshal twin info failed, err: {err.reason}")
        return
    record = ctx.devices.get(device_id)
    if record is None:
        await ctx.publish_error(topic, request.event_id, NOT_FOUND,
                                f"Device {device_id} not found while getting twin")
        return
    answer = get_payload(request.event_id, ctx.wall_ms(), record.twins)
    # Through the committer, so it comes after the results of the updates before it.
    await ctx.store([], then=lambda: ctx.publish(topic, answer))


async def desired_changed(ctx: TwinContext, device_id: str, desired: dict[str, Desired]) -> None:
    """PROJECT: the Device's desired values as expected values changed by the cloud."""
    record = ctx.devices.get(device_id)
    if record is None or not desired:
        return
    now = ctx.wall_ms()
    change = apply_desired(record.twins, desired, now)
    if change.changed:
        log.info("device %s: desired %s from the cloud", device_id,
                 {k: v.expected.value for k, v in change.twins.items() if v.expected})
        await _commit(ctx, device_id, change, event_id=ctx.new_id(), now=now, deal=None)
