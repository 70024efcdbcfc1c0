"""Pod phase (kubelet's getPhase), container statuses and conditions."""

from __future__ import annotations

import pytest

from pykubeedge.edge.edged.podstatus import (
    ContainerView,
    build_status,
    pod_phase,
    restart_policy,
)
from pykubeedge.edge.edged.runtime import ContainerState, ContainerStatus, RuntimeVersion
from pykubeedge.edge.edged.timefmt import rfc3339

RT = RuntimeVersion("fake", "0.1.0")


def _c(state: ContainerState, exit_code: int = 0, attempt: int = 0, cid: str = "c") -> (
    ContainerStatus
):
    return ContainerStatus(id=cid, name="app", attempt=attempt, state=state, image="img",
                           image_ref="img@sha256:1", created_at=10, started_at=10,
                           finished_at=20 if state is ContainerState.EXITED else 0,
                           exit_code=exit_code)


RUN = ContainerView("a", "img", _c(ContainerState.RUNNING))
OK = ContainerView("b", "img", _c(ContainerState.EXITED, 0))
BAD = ContainerView("c", "img", _c(ContainerState.EXITED, 1))
NEW = ContainerView("d", "img")
BACKOFF = ContainerView("e", "img", _c(ContainerState.EXITED, 1), waiting=("CrashLoopBackOff", ""))
CONFIG = ContainerView("f", "img", waiting=("CreateContainerConfigError", "x"))


@pytest.mark.parametrize(
    ("policy", "views", "terminal", "phase"),
    [
        ("Always", [NEW], False, "Pending"),
        ("Always", [CONFIG], False, "Pending"),
        ("Always", [RUN, NEW], False, "Pending"),
        ("Always", [RUN], False, "Running"),
        ("Always", [RUN, OK], False, "Running"),
        ("Always", [OK], False, "Running"),
        ("Always", [BACKOFF], False, "Running"),
        ("Always", [OK], True, "Succeeded"),
        ("Always", [OK, BAD], True, "Failed"),
        ("Never", [OK], False, "Succeeded"),
        ("Never", [OK, BAD], False, "Failed"),
        ("Never", [RUN, BAD], False, "Running"),
        ("OnFailure", [OK], False, "Succeeded"),
        ("OnFailure", [BAD], False, "Running"),
        ("Never", [], False, "Pending"),
    ],
)
def test_phase(policy: str, views: list[ContainerView], terminal: bool, phase: str) -> None:
    assert pod_phase(policy, views, terminal=terminal) == phase


def test_restart_policy_default() -> None:
    assert restart_policy({"spec": {}}) == "Always"
    assert restart_policy({"spec": {"restartPolicy": "Never"}}) == "Never"
    assert restart_policy({"spec": {"restartPolicy": "bogus"}}) == "Always"
    assert restart_policy({}) == "Always"


def test_status_shapes_and_stable_transitions() -> None:
    views = [
        ContainerView("a", "img", _c(ContainerState.RUNNING, cid="x1", attempt=2),
                      previous=_c(ContainerState.EXITED, 1, attempt=1, cid="x0")),
        ContainerView("b", "img2", waiting=("ErrImagePull", "nope")),
    ]
    first = build_status({}, views, phase="Pending", host_ip="h", pod_ip="p",
                         start_time=5, sandbox_ready=True, now=100, runtime=RT)
    a, b = first["containerStatuses"]
    assert a["state"] == {"running": {"startedAt": rfc3339(10)}}
    assert a["lastState"]["terminated"]["exitCode"] == 1
    assert a["lastState"]["terminated"]["containerID"] == "fake://x0"
    assert (a["restartCount"], a["ready"], a["containerID"]) == (2, True, "fake://x1")
    assert b["state"] == {"waiting": {"reason": "ErrImagePull", "message": "nope"}}
    assert (b["ready"], b["restartCount"], b["lastState"]) == (False, 0, {})
    assert "containerID" not in b
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "containers with unready status: [b]"
    assert ready["lastTransitionTime"] == rfc3339(100)

    later = build_status({}, views, phase="Pending", host_ip="h", pod_ip="p", start_time=5,
                         sandbox_ready=True, now=500, runtime=RT,
                         previous_conditions=first["conditions"])
    assert later == first  # nothing changed: identical, so nothing is sent
    done = build_status({}, [views[0]], phase="Running", host_ip="h", pod_ip="p",
                        start_time=5, sandbox_ready=True, now=900, runtime=RT,
                        previous_conditions=first["conditions"])
    conditions = {c["type"]: c for c in done["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["lastTransitionTime"] == rfc3339(900)
    assert conditions["Initialized"]["lastTransitionTime"] == rfc3339(100)
