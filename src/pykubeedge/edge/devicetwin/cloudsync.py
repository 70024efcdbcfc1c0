"""What DeviceTwin owes the cloud: twin changes (``device/<id>/twin/edge_updated``) and device
states (``device/<id>/state/update``) until DeviceController confirms them.

Upstream sends one message per change and keeps it in a ConfirmMap that is resent every 60 s,
but drops everything produced while the cloud is disconnected. Here (PROJECT):

- changes are kept per device and property, a newer change of a property superseding the
  older one (values and versions travel together: :func:`pykubeedge.core.twin.merge_sync`),
  and persisted with the twin (``device_cloud_pending``), so nothing is lost offline or across
  a restart;
- at most one message per device and kind is unconfirmed at a time, and at most ``window``
  overall: a chatty device becomes fewer, fuller messages instead of a flood;
- unconfirmed messages are resent after a reconnect, or after ``resend_after`` seconds.

Sans IO apart from the caller's ``send``; time comes in as ``now``::

    sync = CloudSync()
    rows = sync.add_twins("default/thermo", change.sync)     # persist these with the twin
    sync.mark_ready("default/thermo")                        # once they are on disk
    for msg in sync.take(now): await send(msg)
    dropped = sync.confirm(reply.parent_msg_id)              # delete these pending rows
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pykubeedge.core.constants import MessageGroup, Operation
from pykubeedge.core.message import Message, new_id, now_ms
from pykubeedge.core.topics import cloud_state_resource, cloud_twin_resource
from pykubeedge.core.twin import MsgTwin, merge_sync, msg_twin_from_json, sync_payload
from pykubeedge.edge.devicetwin.dao import PENDING_STATE, PENDING_TWIN, PendingRow

log = logging.getLogger(__name__)

SOURCE = "twin"
DEFAULT_WINDOW = 64
RESEND_AFTER_S = 30.0

Key = tuple[str, str]  # (device id, kind)


@dataclass
class _Owed:
    twins: dict[str, MsgTwin | None] = field(default_factory=dict)
    generation: dict[str, int] = field(default_factory=dict)
    state: dict[str, Any] | None = None
    state_generation: int = 0
    ready: bool = False


@dataclass
class _Sent:
    key: Key
    generations: dict[str, int]
    sent_at: float


class CloudSync:
    def __init__(self, *, window: int = DEFAULT_WINDOW, resend_after: float = RESEND_AFTER_S,
                 new_id: Callable[[], str] = new_id, wall_ms: Callable[[], int] = now_ms) -> None:
        self.window = window
        self.resend_after = resend_after
        self._new_id = new_id
        self._wall_ms = wall_ms
        self._owed: dict[str, _Owed] = {}
        self._dirty: OrderedDict[Key, None] = OrderedDict()
        self._inflight: dict[str, _Sent] = {}
        self._busy: dict[Key, str] = {}
        self._counter = 0
        self.connected = False
        self.sent = 0

    # -- what is owed ----------------------------------------------------------------------

    def add_twins(self, device_id: str, entries: Mapping[str, MsgTwin | None]) -> list[PendingRow]:
        """Owe the cloud these twin changes; returns the merged rows to persist."""
        owed = self._owed.setdefault(device_id, _Owed())
        rows = []
        for name, entry in entries.items():
            merged = merge_sync(owed.twins[name], entry) if name in owed.twins else entry
            owed.twins[name] = merged
            owed.generation[name] = self._next()
            rows.append(PendingRow(device_id, PENDING_TWIN, name,
                                   None if merged is None else merged.to_json()))
        return rows

    def add_state(self, device_id: str, payload: dict[str, Any]) -> PendingRow:
        """Owe the cloud this state report (it supersedes an unsent older one)."""
        owed = self._owed.setdefault(device_id, _Owed())
        owed.state = payload
        owed.state_generation = self._next()
        return PendingRow(device_id, PENDING_STATE, "", payload)

    def mark_ready(self, device_id: str) -> None:
        """What is owed for ``device_id`` is stored: it may go."""
        owed = self._owed.get(device_id)
        if owed is None:
            return
        owed.ready = True
        if owed.twins:
            self._dirty[(device_id, PENDING_TWIN)] = None
        if owed.state is not None:
            self._dirty[(device_id, PENDING_STATE)] = None

    def restore(self, rows: Iterable[PendingRow]) -> None:
        """Pending rows from the database (after a restart): all ready to go."""
        for row in rows:
            owed = self._owed.setdefault(row.device_id, _Owed())
            if row.kind == PENDING_STATE and isinstance(row.entry, dict):
                owed.state, owed.state_generation = row.entry, self._next()
            elif row.kind == PENDING_TWIN:
                try:
                    entry = None if row.entry is None else msg_twin_from_json(row.entry)
                except ValueError:
                    log.error("unreadable pending twin %s/%s dropped", row.device_id, row.name)
                    continue
                owed.twins[row.name] = entry
                owed.generation[row.name] = self._next()
        for device_id in list(self._owed):
            self.mark_ready(device_id)

    def forget(self, device_id: str) -> None:
        """The device is no longer a member: owe nothing for it."""
        self._owed.pop(device_id, None)
        for kind in (PENDING_TWIN, PENDING_STATE):
            self._dirty.pop((device_id, kind), None)
            msg_id = self._busy.pop((device_id, kind), None)
            if msg_id is not None:
                self._inflight.pop(msg_id, None)

    def owed(self) -> int:
        """How many device/kind entries are unconfirmed."""
        return sum(bool(o.twins) + (o.state is not None) for o in self._owed.values())

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    # -- the connection ----------------------------------------------------------------------

    def on_connected(self) -> None:
        self.connected = True

    def on_disconnected(self) -> None:
        """What was in flight may be lost with the connection: it goes again."""
        self.connected = False
        for sent in self._inflight.values():
            self._dirty[sent.key] = None
            self._dirty.move_to_end(sent.key, last=False)
        self._inflight.clear()
        self._busy.clear()

    # -- sending -------------------------------------------------------------------------------

    def take(self, now: float) -> list[Message]:
        """The messages to send now (none while disconnected)."""
        if not self.connected:
            return []
        for msg_id, sent in list(self._inflight.items()):
            if now - sent.sent_at >= self.resend_after:
                log.info("no confirmation of %s from the cloud in %.0fs; sending again",
                         sent.key, self.resend_after)
                del self._inflight[msg_id]
                self._busy.pop(sent.key, None)
                self._dirty[sent.key] = None
        out: list[Message] = []
        for key in list(self._dirty):
            if len(self._inflight) >= self.window:
                break
            if key in self._busy:
                continue
            del self._dirty[key]
            msg = self._build(key, now)
            if msg is not None:
                out.append(msg)
        self.sent += len(out)
        return out

    def next_deadline(self) -> float | None:
        """When ``take`` may next have a resend to do."""
        if not self._inflight:
            return None
        return min(s.sent_at for s in self._inflight.values()) + self.resend_after

    def _build(self, key: Key, now: float) -> Message | None:
        device_id, kind = key
        owed = self._owed.get(device_id)
        if owed is None or not owed.ready:
            return None
        msg_id = self._new_id()
        if kind == PENDING_TWIN:
            if not owed.twins:
                return None
            generations = dict(owed.generation)
            content: Any = sync_payload(self._new_id(), self._wall_ms(), owed.twins)
            resource = cloud_twin_resource(device_id)
        else:
            if owed.state is None:
                return None
            generations = {"": owed.state_generation}
            content = orjson.dumps(owed.state).decode()  # upstream sends the JSON as a string
            resource = cloud_state_resource(device_id)
        self._inflight[msg_id] = _Sent(key, generations, now)
        self._busy[key] = msg_id
        return Message(msg_id=msg_id, source=SOURCE, group=MessageGroup.RESOURCE,
                       operation=Operation.UPDATE, resource=resource, content=content)

    def confirm(self, parent_msg_id: str) -> list[tuple[str, str, str]]:
        """The cloud confirmed a message: what it carried and nothing newer has replaced is
        no longer owed. Returns the (device, kind, name) rows to delete; [] if unknown."""
        sent = self._inflight.pop(parent_msg_id, None)
        if sent is None:
            return []
        key = sent.key
        self._busy.pop(key, None)
        device_id, kind = key
        owed = self._owed.get(device_id)
        done: list[tuple[str, str, str]] = []
        if owed is None:
            return done
        if kind == PENDING_TWIN:
            for name, generation in sent.generations.items():
                if owed.generation.get(name) == generation:
                    del owed.twins[name], owed.generation[name]
                    done.append((device_id, kind, name))
            if owed.twins:
                self._dirty[key] = None  # newer changes came meanwhile
        elif owed.state is not None and owed.state_generation == sent.generations.get(""):
            owed.state = None
            done.append((device_id, kind, ""))
        elif owed.state is not None:
            self._dirty[key] = None
        if not owed.twins and owed.state is None:
            del self._owed[device_id]
        return done
