"""Record golden vectors from the frame logs of an interop run (PYKUBEEDGE_WIRE_LOG=full):
one frame per kind of message (direction, source, group, operation, resource type, content
shape), as our side read or wrote it while talking to upstream KubeEdge v1.23.1::

    PYKUBEEDGE_WIRE_LOG=full PYKUBEEDGE_KEEP=1 pytest tests/interop --basetemp=/tmp/rec ...
    python3 tests/unit/core/golden/record.py \
        go-edge=/tmp/rec/go-edge-our-cloud0/cloudcore.log \
        go-cloud=/tmp/rec/our-edge-go-cloud0/edgecore.log > tests/unit/core/golden/v1.23.1.jsonl

``go-edge``: our cloudcore's log (frames "<-" came from upstream's edgecore, "->" went to it
and it accepted them); ``go-cloud``: our edgecore's log (frames "<-" came from upstream's
cloudcore). Service account tokens are replaced by "REDACTED".
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

FRAME = re.compile(r"pykubeedge\.wire: \S+ (<-|->) (.*)$")


def shape(content: Any) -> str:
    if isinstance(content, dict):
        return "object-resp" if {"Object", "Err"} <= set(content) else "object"
    if isinstance(content, str):
        return "json-text" if content[:1] in "{[" else "text"
    return type(content).__name__


def redact(frame: dict[str, Any]) -> dict[str, Any]:
    content = frame.get("content")
    if isinstance(content, dict) and isinstance(content.get("status"), dict) and \
            "token" in content["status"]:
        content["status"]["token"] = "REDACTED"
    return frame


def main(args: list[str]) -> None:
    seen: set[tuple[str, ...]] = set()
    for arg in args:
        peer, path = arg.split("=", 1)
        for line in Path(path).read_text(errors="replace").splitlines():
            m = FRAME.search(line)
            if not m:
                continue
            frame = json.loads(m.group(2))
            route = frame.get("route") or {}
            resource = route.get("resource", "")
            parts = resource.split("/")
            rtype = parts[-2] if len(parts) >= 3 else resource
            direction = "from-upstream" if m.group(1) == "<-" else "to-upstream"
            key = (peer, direction, str(route.get("source")), str(route.get("group")),
                   str(route.get("operation")), rtype, shape(frame.get("content")))
            if key in seen:
                continue
            seen.add(key)
            print(json.dumps({"peer": peer, "direction": direction, "type": rtype,
                              "shape": key[-1], "frame": redact(frame)}, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
