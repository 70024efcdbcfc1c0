"""Membership: which devices this node manages (upstream ``dtmanager/membership.go``).

The cloud adds and removes devices (``membership`` from DeviceController); each change is
stored in the ``device`` table and published on ``$hw/events/node/<node>/membership/updated``.
Apps ask ``.../membership/get``. Unlike upstream, adding a device that is already a member is a
no-op (upstream publishes a spurious 400 after every cloudcore restart), so the cloud may
resend membership freely.

    await members_added(ctx, [MemberDevice("default/thermo", "thermo")])
    await membership_get(ctx, payload)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pykubeedge.core.device import (
    MemberDevice,
    MembershipUpdate,
    membership_get_payload,
    membership_updated_payload,
)
from pykubeedge.core.topics import MEMBERSHIP_GET_RESULT, MEMBERSHIP_UPDATED, node_topic
from pykubeedge.core.twin import TwinError, parse_base
from pykubeedge.edge.devicetwin.context import Then, TwinContext
from pykubeedge.edge.devicetwin.dao import DeviceRecord

log = logging.getLogger(__name__)


async def apply_update(ctx: TwinContext, update: MembershipUpdate, *, detail: bool = False) -> None:
    """A membership update (``detail``: the complete list, so others are removed)."""
    await members_added(ctx, update.added)
    removed = list(update.removed)
    if detail:
        keep = {d.id for d in update.added}
        removed += [MemberDevice(dev_id) for dev_id in sorted(ctx.devices) if dev_id not in keep]
    await members_removed(ctx, removed)


async def members_added(ctx: TwinContext, devices: Iterable[MemberDevice]) -> None:
    for dev in devices:
        if dev.id in ctx.devices:
            continue
        if dev.twin or dev.attributes:
            log.info("device %s: twins and attributes in a membership update are not applied "
                     "(DeviceController sends none)", dev.id)
        record = DeviceRecord(dev.id, dev.name, dev.description)
        ctx.devices[dev.id] = record
        log.info("device %s is now a member of node %s", dev.id, ctx.node)
        await ctx.store([ctx.dao.add_device(record)], touched=[dev.id],
                        then=_announcer(ctx, added=MemberDevice(dev.id, dev.name,
                                                                dev.description)))


async def members_removed(ctx: TwinContext, devices: Iterable[MemberDevice]) -> None:
    for dev in devices:
        record = ctx.devices.pop(dev.id, None)
        if record is None:
            log.warning("membership: device %s to remove is not a member; ignored", dev.id)
            continue
        ctx.cloud.forget(dev.id)
        log.info("device %s is no longer a member of node %s", dev.id, ctx.node)
        await ctx.store([ctx.dao.delete_device(dev.id)], touched=[dev.id],
                        then=_announcer(ctx, removed=MemberDevice(
                            dev.id, dev.name or record.name, dev.description)))


def _announcer(ctx: TwinContext, *, added: MemberDevice | None = None,
               removed: MemberDevice | None = None) -> Then:
    """Publishes one device's ``membership/updated`` (one message per device, as upstream)."""
    async def announce() -> None:
        await ctx.publish(node_topic(ctx.node, MEMBERSHIP_UPDATED), membership_updated_payload(
            ctx.new_id(), ctx.wall_ms(), [added] if added else None,
            [removed] if removed else None))
    return announce


async def membership_get(ctx: TwinContext, payload: str | bytes) -> None:
    """Answer ``membership/get`` with the member devices (no twins), on the own node's topic
    whatever node the request named, as upstream."""
    topic = node_topic(ctx.node, MEMBERSHIP_GET_RESULT)
    try:
        request = parse_base(payload, ctx.max_payload)
    except TwinError as err:
        await ctx.publish_error(topic, err.event_id, err.code, f"Unmarshal get membership "
                                f"info failed, err: {err.reason}")
        return
    devices = [MemberDevice(r.id, r.name, r.description, r.state, r.last_online, r.attributes)
               for _, r in sorted(ctx.devices.items())]
    answer = membership_get_payload(request.event_id, ctx.wall_ms(), devices)
    await ctx.store([], then=lambda: ctx.publish(topic, answer))
