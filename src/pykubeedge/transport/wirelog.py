"""A frame log for diagnosing the hub protocol against another implementation.

With ``PYKUBEEDGE_WIRE_LOG=1`` in the environment, every text frame CloudHub and EdgeHub
read or write is logged (logger ``pykubeedge.wire``, level INFO, at most ``MAX_LOGGED``
characters of each; ``PYKUBEEDGE_WIRE_LOG=full``: whole frames, for recording golden
vectors); otherwise nothing is logged and the cost is one boolean test::

    wire_log("in", "edge-1", frame_bytes)     # "edge-1 <- {...}"
"""

from __future__ import annotations

import logging
import os
from typing import Final

log = logging.getLogger("pykubeedge.wire")

ENV: Final = "PYKUBEEDGE_WIRE_LOG"
MAX_LOGGED: Final = 2000
ENABLED: Final = os.environ.get(ENV, "") not in ("", "0", "false")
LIMIT: Final = None if os.environ.get(ENV) == "full" else MAX_LOGGED


def wire_log(direction: str, peer: str, data: bytes | bytearray | memoryview | str) -> None:
    """Log one frame, ``direction`` "in" (read) or "out" (written), if the log is on."""
    if not ENABLED:
        return
    raw = data if isinstance(data, str) else bytes(data).decode(errors="replace")
    arrow = "<-" if direction == "in" else "->"
    log.info("%s %s %s", peer, arrow, raw[:LIMIT])
