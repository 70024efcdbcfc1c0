"""Errors of the beehive runtime, rooted in the project's one hierarchy.

They live here only until ``core/errors.py`` takes them in; import them from
``pykubeedge.beehive``, which will keep re-exporting them.
"""

from __future__ import annotations

from pykubeedge.core.errors import PyKubeEdgeError


class BeehiveError(PyKubeEdgeError):
    """The beehive runtime refused an operation."""


class UnknownModuleError(BeehiveError, LookupError):
    """No module of that name is registered (a disabled module, or a typo)."""


class HiveClosedError(BeehiveError):
    """The hive has shut down: nothing can be sent, received or awaited any more."""
