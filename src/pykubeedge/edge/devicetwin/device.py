"""Device state (upstream ``dtmanager/device.go``): ``$hw/events/device/<id>/state/update``
sets the device's state and ``last_online``, is answered on ``.../state/update/result`` and is
owed to the cloud (``device/<id>/state/update``, which sets the DeviceStatus's ``state`` and
``lastOnlineTime``).

PROJECT: a bad request, an unknown device or a state outside upstream's list is answered with
an error result (upstream drops them silently).

    await state_update(ctx, "default/thermo", b'{"event_id":"s1","state":"online"}')
"""

from __future__ import annotations

from pykubeedge.core.device import last_online_for, parse_state_update, state_payload
from pykubeedge.core.topics import STATE_UPDATE_RESULT, device_topic
from pykubeedge.core.twin import NOT_FOUND, TwinError
from pykubeedge.edge.devicetwin.context import TwinContext


async def state_update(ctx: TwinContext, device_id: str, payload: str | bytes) -> None:
    topic = device_topic(device_id, STATE_UPDATE_RESULT)
    try:
        event_id, state = parse_state_update(payload, ctx.max_payload)
    except TwinError as err:
        await ctx.publish_error(topic, err.event_id, err.code, err.reason)
        return
    record = ctx.devices.get(device_id)
    if record is None:
        await ctx.publish_error(topic, event_id, NOT_FOUND,
                                f"Device {device_id} not found while updating its state")
        return
    last_online = last_online_for(state, ctx.wall_s())
    record.state, record.last_online = state, last_online
    # Upstream's result carries a new event id, and the same JSON goes to the cloud.
    result = state_payload(ctx.new_id(), ctx.wall_ms(), record.name, state, last_online)
    owed = ctx.cloud.add_state(device_id, result)

    async def then() -> None:
        await ctx.publish(topic, result)
        ctx.cloud.mark_ready(device_id)
        ctx.wake_sync()

    await ctx.store([ctx.dao.update_state(device_id, state, last_online),
                     ctx.dao.put_pending([owed])], then=then, error_topic=topic,
                    event_id=event_id, touched=[device_id])
