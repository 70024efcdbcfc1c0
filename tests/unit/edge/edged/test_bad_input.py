"""Bad input is logged and ignored; it never crashes Edged or disturbs running pods."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pykubeedge.core.message import new_message, response
from pykubeedge.edge.edged import FakeRuntime
from tests.unit.edge.edged.harness import (
    FakeMetaManager,
    FakeTime,
    make_edged,
    make_pod,
    pod_message,
    running,
)


def _without(key: str) -> dict[str, Any]:
    pod = make_pod("broken")
    del pod["metadata"][key]
    return pod


def _no_containers() -> dict[str, Any]:
    pod = make_pod("empty")
    pod["spec"]["containers"] = []
    return pod


BAD_MESSAGES = [
    pytest.param(pod_message("insert", _no_containers()), id="no-containers"),
    pytest.param(pod_message("insert", "not a pod", "default/pod/x"), id="string-content"),
    pytest.param(pod_message("insert", '{"half": ', "default/pod/x"), id="broken-json"),
    pytest.param(pod_message("insert", None, "default/pod/x"), id="no-content"),
    pytest.param(pod_message("insert", [1, 2], "default/pod/x"), id="list-content"),
    pytest.param(pod_message("insert", _without("uid")), id="no-uid"),
    pytest.param(pod_message("insert", _without("name"), "default/pod/broken"), id="no-name"),
    pytest.param(pod_message("insert", {"metadata": "x", "spec": 1}, "default/pod/x"),
                 id="wrong-types"),
    pytest.param(pod_message("insert", make_pod("lost", node="edge-2")), id="other-node"),
    pytest.param(pod_message("insert", make_pod("nonode", node="")), id="unbound"),
    pytest.param(pod_message("insert", make_pod(
        "noimage", containers=[{"name": "app"}])), id="no-image"),
    pytest.param(pod_message("insert", make_pod("twice", containers=[
        {"name": "a", "image": "x"}, {"name": "a", "image": "y"}])), id="duplicate-names"),
    pytest.param(pod_message("insert", make_pod("badenv", containers=[
        {"name": "a", "image": "x", "env": "oops", "envFrom": [1], "volumeMounts": {}}])),
                 id="malformed-env"),
    pytest.param(pod_message("insert", make_pod("badvol", volumes=[
        {"name": "v", "configMap": "nope"}, 7])), id="malformed-volumes"),
    pytest.param(pod_message("delete", None, "default/pod/unknown"), id="delete-unknown"),
    pytest.param(pod_message("delete", "garbage", "default/pod/web"), id="delete-garbage"),
    pytest.param(pod_message("patch", make_pod("x")), id="unknown-operation"),
    pytest.param(pod_message("insert", make_pod("x"), "no-slashes"), id="bad-resource"),
    pytest.param(pod_message("insert", make_pod("x"), "a//b"), id="empty-token"),
    pytest.param(pod_message("insert", make_pod("x"), "default/pod/y"), id="name-mismatch"),
    pytest.param(pod_message("insert", make_pod("x"), "other/pod/x"), id="namespace-mismatch"),
    pytest.param(new_message(source="metamanager", group="edged",
                             resource="default/service/s", operation="insert", content={}),
                 id="unknown-type"),
    pytest.param(response(pod_message("query", None, "null/pod"), []), id="late-response"),
]


@pytest.mark.parametrize("bad", BAD_MESSAGES)
async def test_bad_input_is_ignored_and_edged_keeps_working(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pykubeedge.edge.edged")
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    edged = make_edged(t, runtime=runtime)
    async with running(edged, meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("web")))
        await t.advance(1)
        before = meta.last_status("web")

        await hive.send("edged", bad)
        await t.advance(1)

        assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
        # the good pod is untouched, and Edged still takes new pods
        assert meta.last_status("web") == before
        await hive.send("edged", pod_message("insert", make_pod("after")))
        await t.advance(1)
        assert meta.last_status("after")["phase"] == "Running"
        uids = {s.uid for s in await runtime.list_pods()}
        # malformed env/volume entries are skipped, the rest of those pods is fine
        assert uids - {"uid-web"} <= {"uid-after", "uid-badenv", "uid-badvol"}
        if bad.resource != "default/pod/web":  # a delete by name with garbage content is
            assert "uid-web" in uids           # still a delete of that pod


async def test_a_pod_for_another_node_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pykubeedge.edge.edged")
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        await hive.send("edged", pod_message("insert", make_pod("lost", node="edge-2")))
        await t.advance(1)
    assert runtime.sandboxes_created == 0
    assert meta.pod_patches("lost") == []
    assert any("is for node 'edge-2'" in r.getMessage() for r in caplog.records)


async def test_a_runtime_outage_does_not_crash_workers() -> None:
    t, meta = FakeTime(), FakeMetaManager()
    runtime = FakeRuntime(clock=t.clock)
    async with running(make_edged(t, runtime=runtime), meta) as hive:
        runtime.healthy = False
        await hive.send("edged", pod_message("insert", make_pod("web")))
        await t.advance(15)
        assert runtime.sandboxes_created == 0
        runtime.healthy = True
        await t.advance(10)
        assert meta.last_status("web")["phase"] == "Running"
