"""Pod status as kubelet computes it: phase, conditions, container statuses.

Pure functions over what the pod worker knows (``ContainerView`` per container)::

    phase = pod_phase("Always", views, terminal=False)
    status = build_status(pod, views, phase=phase, host_ip="10.0.0.2", pod_ip="10.88.0.2",
                          start_time=t0, sandbox_ready=True, now=t1, runtime=version)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pykubeedge.edge.edged.runtime import (
    ContainerState,
    ContainerStatus,
    RuntimeVersion,
    container_id_uri,
)
from pykubeedge.edge.edged.timefmt import rfc3339

PENDING: Final = "Pending"
RUNNING: Final = "Running"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
TERMINAL_PHASES: Final = frozenset({SUCCEEDED, FAILED})

ALWAYS: Final = "Always"
ON_FAILURE: Final = "OnFailure"
NEVER: Final = "Never"

CONTAINER_CREATING: Final = "ContainerCreating"
CRASH_LOOP_BACK_OFF: Final = "CrashLoopBackOff"
ERR_IMAGE_PULL: Final = "ErrImagePull"
IMAGE_PULL_BACK_OFF: Final = "ImagePullBackOff"
CREATE_CONTAINER_CONFIG_ERROR: Final = "CreateContainerConfigError"
CREATE_CONTAINER_ERROR: Final = "CreateContainerError"


@dataclass(frozen=True, slots=True)
class ContainerView:
    """What the worker knows of one container of the spec.

    ``current``: its newest instance in the runtime; ``previous``: the instance before it;
    ``waiting``: ``(reason, message)`` when it is held back (back-off, config error, pull error).
    """

    name: str
    image: str
    current: ContainerStatus | None = None
    previous: ContainerStatus | None = None
    waiting: tuple[str, str] | None = None
    ready: bool | None = None
    """From the probes (None: ready = running, for containers without probe results)."""
    started: bool | None = None
    sidecar: bool = False
    """An init container with ``restartPolicy: Always``."""
    init: bool = False


def restart_policy(pod: Mapping[str, Any]) -> str:
    """The pod's ``spec.restartPolicy`` (default Always)."""
    spec = pod.get("spec")
    policy = spec.get("restartPolicy") if isinstance(spec, dict) else None
    return policy if policy in (ALWAYS, ON_FAILURE, NEVER) else ALWAYS


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether an exited container is started again under ``policy``.

    >>> should_restart("OnFailure", 0), should_restart("OnFailure", 2), should_restart("Never", 1)
    (False, True, False)
    """
    if policy == ALWAYS:
        return True
    return policy == ON_FAILURE and exit_code != 0


def _shown_state(view: ContainerView) -> str:
    """``running``, ``terminated`` or ``waiting``: what the status will show."""
    current = view.current
    if current is not None and current.state is ContainerState.RUNNING:
        return "running"
    if view.waiting is not None:
        return "waiting"
    if current is not None and current.state is ContainerState.EXITED:
        return "terminated"
    return "waiting"


def _has_last_termination(view: ContainerView) -> bool:
    current = view.current
    if current is not None and current.state is ContainerState.EXITED:
        return True
    return view.previous is not None and view.previous.state is ContainerState.EXITED


def _init_running(view: ContainerView) -> bool:
    return view.current is not None and view.current.state is ContainerState.RUNNING


def pod_phase(policy: str, views: Sequence[ContainerView], *, terminal: bool,
              init_views: Sequence[ContainerView] = ()) -> str:
    """Kubelet's ``getPhase`` (1.32): init containers, sidecars and regular containers.

    ``terminal``: the pod will not run again (deleted, or done under Never/OnFailure), so
    all-exited means Succeeded or Failed even under Always.
    """
    pending_init = failed_init = pending_restartable = 0
    running = waiting = stopped = succeeded = unknown = 0
    for view in init_views:
        shown = _shown_state(view)
        current = view.current
        if view.sidecar:
            if shown == "running":
                running += 1
                if not view.started:
                    pending_restartable += 1
            elif shown == "waiting" and not _has_last_termination(view):
                pending_restartable += 1
                waiting += 1
            continue
        if shown == "running":
            pending_init += 1
        elif shown == "terminated":
            assert current is not None
            if current.exit_code != 0:
                failed_init += 1
        elif _has_last_termination(view) and _last_exit(view) != 0:
            failed_init += 1
        else:
            pending_init += 1
    regular_started = False
    for view in views:
        shown = _shown_state(view)
        if view.current is not None:
            regular_started = True
        if shown == "running":
            running += 1
        elif shown == "terminated":
            stopped += 1
            assert view.current is not None
            if view.current.exit_code == 0:
                succeeded += 1
        elif _has_last_termination(view):
            stopped += 1
        else:
            waiting += 1
    if failed_init and policy == NEVER:
        return FAILED
    if pending_init or (pending_restartable and not regular_started) or waiting:
        return PENDING
    if running and not unknown:
        return RUNNING
    if stopped and not unknown:
        if terminal:
            return SUCCEEDED if stopped == succeeded else FAILED
        if policy == ALWAYS:
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        if policy == NEVER:
            return FAILED
        return RUNNING
    return PENDING


def _last_exit(view: ContainerView) -> int:
    current = view.current
    if current is not None and current.state is ContainerState.EXITED:
        return current.exit_code
    if view.previous is not None:
        return view.previous.exit_code
    return 0


def _terminated(status: ContainerStatus, runtime: RuntimeVersion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "exitCode": status.exit_code,
        "reason": status.reason or ("Completed" if status.exit_code == 0 else "Error"),
        "startedAt": rfc3339(status.started_at) if status.started_at else None,
        "finishedAt": rfc3339(status.finished_at) if status.finished_at else None,
        "containerID": container_id_uri(runtime, status.id),
    }
    if status.message:
        body["message"] = status.message
    return {"terminated": body}


def container_status(view: ContainerView, runtime: RuntimeVersion) -> dict[str, Any]:
    """One entry of ``status.containerStatuses``."""
    current = view.current
    shown = _shown_state(view)
    state: dict[str, Any]
    last: dict[str, Any] = {}
    if shown == "running":
        assert current is not None
        state = {"running": {"startedAt": rfc3339(current.started_at)}}
    elif shown == "terminated":
        assert current is not None
        state = _terminated(current, runtime)
    else:
        reason, message = view.waiting or (CONTAINER_CREATING, "")
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    if shown == "waiting" and current is not None and current.state is ContainerState.EXITED:
        last = _terminated(current, runtime)
    elif view.previous is not None and view.previous.state is ContainerState.EXITED:
        last = _terminated(view.previous, runtime)
    if view.init and not view.sidecar:
        ready = shown == "terminated" and current is not None and current.exit_code == 0
        started = shown == "running"
    else:
        started = shown == "running" and (view.started is None or view.started)
        ready = started and (view.ready is None or view.ready)
    entry: dict[str, Any] = {
        "name": view.name,
        "state": state,
        "lastState": last,
        "ready": ready,
        "restartCount": current.attempt if current is not None else 0,
        "image": view.image,
        "imageID": current.image_ref if current is not None else "",
        "started": started,
    }
    if current is not None:
        entry["containerID"] = container_id_uri(runtime, current.id)
    return entry


def _condition(
    kind: str,
    ok: bool,
    previous: Mapping[str, Mapping[str, Any]],
    now: float,
    reason: str = "",
    message: str = "",
) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = previous.get(kind)
    transition = (
        old.get("lastTransitionTime")
        if old is not None and old.get("status") == status and old.get("lastTransitionTime")
        else rfc3339(now)
    )
    cond: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": transition,
    }
    # null, not absent: conditions merge by type in the API server's strategic merge patch,
    # so an absent reason would keep the one sent before
    cond["reason"] = reason or None
    cond["message"] = message or None
    return cond


def build_status(
    pod: Mapping[str, Any],
    views: Sequence[ContainerView],
    *,
    phase: str,
    host_ip: str,
    pod_ip: str,
    start_time: float,
    sandbox_ready: bool,
    now: float,
    runtime: RuntimeVersion,
    previous_conditions: Sequence[Mapping[str, Any]] = (),
    reason: str = "",
    message: str = "",
    init_views: Sequence[ContainerView] = (),
    qos: str = "",
) -> dict[str, Any]:
    """The pod ``status`` kubelet would report.

    ``previous_conditions`` (the last reported ones) keep ``lastTransitionTime`` stable while a
    condition's status does not change.
    """
    previous = {
        str(c.get("type")): c for c in previous_conditions if isinstance(c, Mapping)
    }
    statuses = [container_status(v, runtime) for v in views]
    init_statuses = [container_status(v, runtime) for v in init_views]
    initialized, init_reason, init_message = _initialized(init_views, init_statuses, views,
                                                          phase)
    sidecars = [s for v, s in zip(init_views, init_statuses, strict=True) if v.sidecar]
    considered = sidecars + statuses
    unready = [s["name"] for s in considered if not s["ready"]]
    if phase == SUCCEEDED:
        ready_ok, ready_reason, ready_message = False, "PodCompleted", ""
    elif phase == FAILED:
        ready_ok, ready_reason, ready_message = False, "PodFailed", ""
    elif unready:
        ready_ok, ready_reason = False, "ContainersNotReady"
        ready_message = f"containers with unready status: [{' '.join(unready)}]"
    else:
        ready_ok, ready_reason, ready_message = True, "", ""
    pod_ready, pod_reason, pod_message = ready_ok, ready_reason, ready_message
    if ready_ok:
        gates = _gate_problems(pod)
        if gates:
            pod_ready, pod_reason, pod_message = False, "ReadinessGatesNotReady", ", ".join(gates)
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready, previous, now),
        _condition("Initialized", initialized, previous, now, init_reason, init_message),
        _condition("Ready", pod_ready, previous, now, pod_reason, pod_message),
        _condition("ContainersReady", ready_ok, previous, now, ready_reason, ready_message),
        _condition("PodScheduled", True, previous, now),
    ]
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    status["startTime"] = rfc3339(start_time)
    if init_views:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = sorted(statuses, key=lambda c: str(c["name"]))
    if qos:
        status["qosClass"] = qos
    return status


def _initialized(init_views: Sequence[ContainerView], init_statuses: list[dict[str, Any]],
                 views: Sequence[ContainerView], phase: str) -> tuple[bool, str, str]:
    if not init_views:
        return True, "", ""
    if phase == SUCCEEDED:
        return True, "PodCompleted", ""
    if any(v.current is not None for v in views):
        return True, "", ""
    incomplete = [s["name"] for v, s in zip(init_views, init_statuses, strict=True)
                  if (v.sidecar and not s["started"]) or (not v.sidecar and not s["ready"])]
    if incomplete:
        return False, "ContainersNotInitialized", \
            f"containers with incomplete status: [{' '.join(incomplete)}]"
    return True, "", ""


def _gate_problems(pod: Mapping[str, Any]) -> list[str]:
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
    assert isinstance(status, dict)
    have = {str(c.get("type")): str(c.get("status")) for c in status.get("conditions") or []
            if isinstance(c, dict)}
    problems = []
    for gate in spec.get("readinessGates") or []:
        kind = str(gate.get("conditionType") if isinstance(gate, dict) else "")
        if kind not in have:
            problems.append(f'corresponding condition of pod readiness gate "{kind}" does '
                            "not exist.")
        elif have[kind] != "True":
            problems.append(f'the status of pod readiness gate "{kind}" is not "True", but '
                            f"{have[kind]}")
    return problems


def rejected_status(*, reason: str, message: str, host_ip: str, now: float) -> dict[str, Any]:
    """The Failed status of a pod kubelet refuses to admit (e.g. ``OutOfpods``)."""
    return {
        "phase": FAILED,
        "reason": reason,
        "message": message,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": rfc3339(now),
    }


# Lists of the pod status that strategic merge patches merge by key (patchMergeKey "ip"):
# sent as they are, the API server would keep old IPs next to the new ones.
_MERGED_BY_KEY = ("podIPs", "hostIPs")


def status_patch(uid: str, status: dict[str, Any]) -> dict[str, Any]:
    """The strategic-merge patch that makes the API server's pod status equal ``status``.

    >>> status_patch("u1", {"podIPs": [{"ip": "10.88.0.2"}]})["status"]["podIPs"]
    [{'$patch': 'replace'}, {'ip': '10.88.0.2'}]
    """
    patch = dict(status)
    for key in _MERGED_BY_KEY:
        if key in patch:
            patch[key] = [{"$patch": "replace"}, *patch[key]]
    return {"metadata": {"uid": uid}, "status": patch}
