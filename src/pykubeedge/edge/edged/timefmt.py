"""Kubernetes time formats.

``metav1.Time`` is RFC 3339 to the second; ``metav1.MicroTime`` (a Lease's ``renewTime``) has
six fractional digits::

    rfc3339(0.0)        # '1970-01-01T00:00:00Z'
    micro_time(0.5)     # '1970-01-01T00:00:00.500000Z'
"""

from __future__ import annotations

import datetime


def rfc3339(ts: float) -> str:
    """``2006-01-02T15:04:05Z`` for Unix time ``ts``.

    >>> rfc3339(1700000000.9)
    '2023-11-14T22:13:20Z'
    """
    moment = datetime.datetime.fromtimestamp(int(ts), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(ts: float) -> str:
    """``2006-01-02T15:04:05.000000Z`` for Unix time ``ts``.

    >>> micro_time(1700000000.25)
    '2023-11-14T22:13:20.250000Z'
    """
    moment = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
