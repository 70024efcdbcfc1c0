"""A control-plane build can be stopped (Ctrl-C in local-up): `go` and its children die."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pykubeedge.devcluster import binaries


def test_abort_kills_the_build_and_says_so(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake_go = tmp_path / "go"
    fake_go.write_text("#!/bin/sh\necho compiling\nsleep 60 &\nwait\n")
    fake_go.chmod(0o755)
    monkeypatch.setattr(binaries.shutil, "which", lambda _name: str(fake_go))
    errors: list[BaseException] = []

    def build() -> None:
        try:
            binaries.run_go(["build"], tmp_path, lambda _line: None)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=build)
    t.start()
    for _ in range(100):  # until it runs
        if binaries._running:
            break
        time.sleep(0.02)
    binaries.abort_builds()
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], binaries.BuildAborted)
    assert "was stopped" in str(errors[0])
