"""Rule status: what each rule delivered, failed and dropped, written back to the Rule
(``status.successMessages``, ``status.failMessages``, ``status.errors``), rate-limited.

Upstream (``cloud/pkg/router/rule/statushandler.go`` + EdgeController) does one GET and one
PATCH of the Rule per message and keeps only the last error. Here the counts are kept in
memory, starting from what the Rule's status already says (so they survive a cloudcore
restart), and every rule that changed is written at most once per ``interval`` with one merge
patch. ``errors`` holds the last :data:`MAX_ERRORS` errors, newest last; once messages were
dropped because the rule's queue was full, its first entry says how many and why.

    stats = RuleStats()
    stats.load("default/r", rule["status"])
    stats.success("default/r")
    writer = StatusWriter(stats, patch)      # patch(namespace, name, status) -> awaitable
    await writer.run()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from pykubeedge.core.errors import KubeError, NotFound

log = logging.getLogger(__name__)

MAX_ERRORS: Final = 5
MAX_ERROR_TEXT: Final = 300
DROPPED_PREFIX: Final = "dropped "


@dataclass
class _Counts:
    success: int = 0
    fail: int = 0
    dropped: int = 0
    drop_reason: str = ""
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_ERRORS))

    def status(self) -> dict[str, Any]:
        errors = list(self.errors)
        if self.dropped:
            errors.insert(0, f"{DROPPED_PREFIX}{self.dropped} message(s): {self.drop_reason}")
        return {"successMessages": self.success, "failMessages": self.fail, "errors": errors}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class RuleStats:
    """Per-rule counts, keyed ``namespace/name``; marks what changed for the writer."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._rules: dict[str, _Counts] = {}
        self.dirty: dict[str, None] = {}
        self.changed = asyncio.Event()
        self._clock = clock

    def load(self, key: str, status: Any) -> None:
        """Start ``key`` from its Rule's ``status`` (kept if already known)."""
        if key in self._rules:
            return
        status = status if isinstance(status, dict) else {}
        counts = _Counts(_int(status.get("successMessages")), _int(status.get("failMessages")))
        for text in status.get("errors") or []:
            if not isinstance(text, str):
                continue
            if text.startswith(DROPPED_PREFIX) and not counts.dropped:
                number, _, reason = text[len(DROPPED_PREFIX):].partition(" message(s): ")
                if number.isdigit():
                    counts.dropped, counts.drop_reason = int(number), reason
                    continue
            counts.errors.append(text)
        self._rules[key] = counts

    def forget(self, key: str) -> None:
        self._rules.pop(key, None)
        self.dirty.pop(key, None)

    def get(self, key: str) -> dict[str, Any] | None:
        counts = self._rules.get(key)
        return counts.status() if counts is not None else None

    def _mark(self, key: str) -> _Counts:
        counts = self._rules.setdefault(key, _Counts())
        self.dirty[key] = None
        self.changed.set()
        return counts

    def success(self, key: str, n: int = 1) -> None:
        self._mark(key).success += n

    def fail(self, key: str, error: str) -> None:
        counts = self._mark(key)
        counts.fail += 1
        counts.errors.append(self._stamp(error))

    def error(self, key: str, error: str) -> None:
        """A rule problem that is no message's failure (e.g. a missing endpoint)."""
        counts = self._mark(key)
        text = self._stamp(error)
        if not counts.errors or counts.errors[-1].partition(" ")[2] != text.partition(" ")[2]:
            counts.errors.append(text)

    def dropped(self, key: str, reason: str, n: int = 1) -> None:
        counts = self._mark(key)
        counts.fail += n
        counts.dropped += n
        counts.drop_reason = self._stamp(reason)

    def _stamp(self, text: str) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock()))
        return f"{when} {text[:MAX_ERROR_TEXT]}"


Patch = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class StatusWriter:
    """Writes each changed rule's status at most once per ``interval`` seconds."""

    def __init__(self, stats: RuleStats, patch: Patch, *, interval: float = 1.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.stats = stats
        self.patch = patch
        self.interval = interval
        self._sleep = sleep
        self.writes = 0

    async def run(self) -> None:
        while True:
            await self.stats.changed.wait()
            await self.flush()
            await self._sleep(self.interval)

    async def flush(self) -> None:
        stats = self.stats
        stats.changed.clear()
        keys = list(stats.dirty)
        stats.dirty.clear()
        for key in keys:
            status = stats.get(key)
            if status is None:
                continue
            ns, _, name = key.partition("/")
            try:
                await self.patch(ns, name, status)
                self.writes += 1
            except NotFound:
                stats.forget(key)  # the Rule is gone
            except KubeError as exc:
                log.warning("rule %s: status not written (%s); retrying", key, exc)
                stats.dirty[key] = None
                stats.changed.set()
