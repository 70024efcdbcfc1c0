"""Rule traffic details the edge's EventBus and the cloud Router share beyond upstream's wire.

While the cloud is unreachable, EventBus keeps at most ``ruleMessageLimit`` messages of each
rule topic in EdgeHub's outbox; after the reconnect it tells the Router how many it dropped with
an ``upload`` (source ``bus``, group ``user``) whose resource is the topic plus
:data:`DROPPED_SUFFIX`. No real publication can have that resource: ``#`` is not allowed in an
MQTT topic name. Upstream's Router finds no rule for it and ignores it.

    >>> report = drop_report(12, 1000)
    >>> parse_drop_report(report)
    (12, 1000)
"""

from __future__ import annotations

from typing import Any, Final

DROPPED_SUFFIX: Final = "/#dropped"


def drop_report(dropped: int, limit: int) -> dict[str, int]:
    return {"dropped": dropped, "limit": limit}


def parse_drop_report(content: Any) -> tuple[int, int] | None:
    """(dropped, limit) from a report's content; None if it is not one."""
    if not isinstance(content, dict):
        return None
    dropped, limit = content.get("dropped"), content.get("limit")
    if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 1:
        return None
    return dropped, limit if isinstance(limit, int) and not isinstance(limit, bool) else 0
