"""Restart policy of a supervised module (upstream ``ModuleRestartPolicy``).

For example::

    RestartPolicy(RestartType.ON_FAILURE, retries=5)  # after 1, 2, 4, 8, 16 s; then give up
    RestartPolicy(RestartType.ALWAYS)  # forever, backoff capped at 30 s
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RestartType(enum.StrEnum):
    """When a module whose ``start`` has ended is started again."""

    ALWAYS = "Always"
    """After it returns or raises."""
    ON_FAILURE = "OnFailure"
    """Only after it raises."""
    NEVER = "Never"
    """Not at all (upstream: no policy)."""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How often and how soon a module is restarted.

    ``retries`` = 0 means no limit, as upstream. The delay starts at ``interval`` seconds and is
    multiplied by ``growth_rate`` after each restart (a rate <= 1 keeps it constant), up to
    ``interval_limit``. A run that lasted at least ``stable_after`` seconds resets both the
    retry count and the delay, so a module that crashes once a week is not given up on.

    >>> p = RestartPolicy(RestartType.ALWAYS, interval=1.0, growth_rate=2.0)
    >>> [p.next_interval(x) for x in (1.0, 16.0, 30.0)]
    [2.0, 30.0, 30.0]
    """

    restart_type: RestartType = RestartType.NEVER
    retries: int = 0
    interval: float = 1.0
    growth_rate: float = 2.0
    interval_limit: float = 30.0
    stable_after: float = 60.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.interval < 0 or self.interval_limit < 0:
            raise ValueError(f"restart policy values must not be negative: {self}")

    def should_restart(self, failed: bool) -> bool:
        """Whether a module that ended (``failed``: by raising) is restarted, retries aside."""
        if self.restart_type is RestartType.ALWAYS:
            return True
        return failed and self.restart_type is RestartType.ON_FAILURE

    @property
    def first_interval(self) -> float:
        """The delay before the first restart."""
        return min(self.interval, self.interval_limit)

    def next_interval(self, current: float) -> float:
        """The delay before the restart after one that waited ``current`` seconds."""
        if self.growth_rate <= 1:
            return current
        return min(current * self.growth_rate, self.interval_limit)


NEVER = RestartPolicy()
"""The default: a module runs once."""
