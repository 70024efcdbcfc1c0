"""Process-wide debug variables, as Go's ``expvar``: a module publishes a function that
returns its counters, a debug endpoint shows them all. The edge modules never import each
other, so this is where EdgeStream's counters meet Edged's ``/debug/vars``::

    publish("edgestream", lambda: {"open_streams": len(tunnel.streams)})
    snapshot()        # {"edgestream": {"open_streams": 0}}
    unpublish("edgestream")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_published: dict[str, Callable[[], Any]] = {}


def publish(name: str, read: Callable[[], Any]) -> None:
    """Show ``read()`` under ``name`` (replacing what was there)."""
    _published[name] = read


def unpublish(name: str, read: Callable[[], Any] | None = None) -> None:
    """Stop showing ``name`` (only if it is still ``read``, when given)."""
    if read is None or _published.get(name) is read:
        _published.pop(name, None)


def snapshot() -> dict[str, Any]:
    """Every published variable's current value; one that fails shows its error."""
    out: dict[str, Any] = {}
    for name, read in list(_published.items()):
        try:
            out[name] = read()
        except Exception as exc:  # a debug page must not fail because one reader did
            out[name] = {"error": str(exc)}
    return out
