"""A container of the spec as kubelet's kuberuntime sees it: its cgroup limits, its effective
security context, whether it is a sidecar, and what Edged refuses to run (admission).

Pure functions over the Pod object::

    resources = container_resources(container, node_memory=8 << 30)    # Resources(...)
    security = security_context(pod, container)                        # Security(...)
    refusal = refusal(pod)       # "" or (reason, message): the pod fails with it
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pykubeedge.edge.edged.runtime import Resources, Security
from pykubeedge.edge.edged.volumemanager import parse_milli, parse_quantity, unsupported_volume

MIN_SHARES: Final = 2
MAX_SHARES: Final = 262144
QUOTA_PERIOD: Final = 100_000
MIN_QUOTA: Final = 1000
GUARANTEED_OOM: Final = -997
BEST_EFFORT_OOM: Final = 1000
UNSUPPORTED: Final = "UnsupportedPodSpec"
"""The reason of a pod Edged refuses (``status.reason``; the message says what and why)."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_sidecar(container: Mapping[str, Any]) -> bool:
    """An init container with ``restartPolicy: Always`` (a sidecar, kubelet 1.29+)."""
    return container.get("restartPolicy") == "Always"


def init_containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pod's init containers (spec order)."""
    return [_dict(c) for c in _list(_dict(pod.get("spec")).get("initContainers"))
            if isinstance(c, dict)]


def _quantities(container: Mapping[str, Any], section: str) -> dict[str, str]:
    values = _dict(_dict(container.get("resources")).get(section))
    return {str(k): str(v) for k, v in values.items()}


def qos_class(pod: Mapping[str, Any]) -> str:
    """``Guaranteed``, ``Burstable`` or ``BestEffort`` (the API server's rule).

    >>> qos_class({"spec": {"containers": [{"name": "c"}]}})
    'BestEffort'
    """
    status = _dict(pod.get("status")).get("qosClass")
    if status in ("Guaranteed", "Burstable", "BestEffort"):
        return str(status)
    spec = _dict(pod.get("spec"))
    containers = [_dict(c) for c in _list(spec.get("containers")) + _list(
        spec.get("initContainers"))]
    any_set = False
    guaranteed = True
    for container in containers:
        requests, limits = _quantities(container, "requests"), _quantities(container, "limits")
        if requests or limits:
            any_set = True
        for kind in ("cpu", "memory"):
            if kind not in limits or requests.get(kind, limits[kind]) != limits[kind]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def container_resources(pod: Mapping[str, Any], container: Mapping[str, Any], *,
                        node_memory: int) -> Resources:
    """kubelet's ``calculateLinuxResources`` and ``GetContainerOOMScoreAdjust``.

    >>> c = {"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}
    >>> r = container_resources({"spec": {"containers": [c]}}, c, node_memory=1 << 30)
    >>> r.cpu_shares, r.cpu_quota, r.memory_limit, r.oom_score_adj
    (512, 50000, 67108864, -997)
    """
    requests, limits = _quantities(container, "requests"), _quantities(container, "limits")
    cpu_request = parse_milli(requests.get("cpu") or limits.get("cpu") or "0")
    shares = MIN_SHARES if cpu_request == 0 else min(max(cpu_request * 1024 // 1000, MIN_SHARES),
                                                     MAX_SHARES)
    cpu_limit = parse_milli(limits.get("cpu") or "0")
    quota = 0 if cpu_limit == 0 else max(cpu_limit * QUOTA_PERIOD // 1000, MIN_QUOTA)
    memory_limit = parse_quantity(limits.get("memory") or "0")
    qos = qos_class(pod)
    if qos == "Guaranteed":
        oom = GUARANTEED_OOM
    elif qos == "BestEffort":
        oom = BEST_EFFORT_OOM
    else:
        memory_request = parse_quantity(requests.get("memory") or limits.get("memory") or "0")
        oom = 1000 - (1000 * memory_request) // node_memory if node_memory > 0 else 999
        oom = min(max(oom, 3), 999)
    return Resources(cpu_shares=shares, cpu_quota=quota, cpu_period=QUOTA_PERIOD,
                     memory_limit=memory_limit, oom_score_adj=oom)


def pod_memory_limit(pod: Mapping[str, Any]) -> int:
    """The sum of the containers' memory limits if every container has one, else 0."""
    total = 0
    for container in _list(_dict(pod.get("spec")).get("containers")):
        limit = parse_quantity(_quantities(_dict(container), "limits").get("memory") or "0")
        if limit == 0:
            return 0
        total += limit
    return total


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def security_context(pod: Mapping[str, Any], container: Mapping[str, Any]) -> Security:
    """The effective security context (the container's over the pod's), as CRI wants it.

    >>> pod = {"spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000}}}
    >>> s = security_context(pod, {"securityContext": {"readOnlyRootFilesystem": True}})
    >>> s.run_as_user, s.readonly_rootfs, s.supplemental_groups
    (1000, True, (2000,))
    """
    pod_ctx = _dict(_dict(pod.get("spec")).get("securityContext"))
    ctx = _dict(container.get("securityContext"))

    def pick(key: str) -> Any:
        return ctx[key] if key in ctx else pod_ctx.get(key)

    capabilities = _dict(ctx.get("capabilities"))
    groups = [g for g in _list(pod_ctx.get("supplementalGroups")) if _int(g) is not None]
    fs_group = _int(pod_ctx.get("fsGroup"))
    if fs_group is not None:
        groups.append(fs_group)
    privileged = bool(ctx.get("privileged"))
    return Security(
        run_as_user=_int(pick("runAsUser")),
        run_as_group=_int(pick("runAsGroup")),
        run_as_non_root=bool(pick("runAsNonRoot")),
        privileged=privileged,
        readonly_rootfs=bool(ctx.get("readOnlyRootFilesystem")),
        add_capabilities=tuple(str(c) for c in _list(capabilities.get("add"))),
        drop_capabilities=tuple(str(c) for c in _list(capabilities.get("drop"))),
        no_new_privs=ctx.get("allowPrivilegeEscalation") is False,
        supplemental_groups=tuple(groups),
        unmasked_proc=ctx.get("procMount") == "Unmasked",
    )


def run_as_non_root_error(pod: Mapping[str, Any], container: Mapping[str, Any],
                          security: Security, image_user: str) -> str:
    """kubelet's ``verifyRunAsNonRoot`` (``""`` when fine)."""
    if not security.run_as_non_root:
        return ""
    meta = _dict(pod.get("metadata"))
    who = f'(pod: "{meta.get("name")}_{meta.get("namespace")}({meta.get("uid")})", ' \
          f'container: {container.get("name")})'
    explicit = (container.get("securityContext") or {}).get("runAsUser", (
        (pod.get("spec") or {}).get("securityContext") or {}).get("runAsUser"))
    if isinstance(explicit, int):
        if explicit == 0:
            return f"container's runAsUser breaks non-root policy {who}"
        return ""
    user = image_user.split(":", 1)[0]
    if user in ("", "0", "root"):
        return f"container has runAsNonRoot and image will run as root {who}"
    if not user.isdigit():
        return (f"container has runAsNonRoot and image has non-numeric user ({user}), "
                f"cannot verify user is non-root {who}")
    return ""


# -- admission: what Edged refuses ---------------------------------------------------------------


def refusal(pod: Mapping[str, Any]) -> str:
    """Why Edged refuses to run ``pod`` (``""``: it runs it). Every pod field the API has is
    either served or named here: nothing is silently left out.

    >>> refusal({"spec": {"hostUsers": False, "containers": [{"name": "c"}]}})
    'spec.hostUsers: false (user namespaces) is not supported by this node's runtime'
    """
    spec = _dict(pod.get("spec"))
    for volume in _list(spec.get("volumes")):
        problem = unsupported_volume(_dict(volume))
        if problem:
            return problem
    if spec.get("hostUsers") is False:
        return "spec.hostUsers: false (user namespaces) is not supported by this node's runtime"
    os_name = _dict(spec.get("os")).get("name")
    if os_name not in (None, "linux"):
        return f"spec.os.name {os_name!r} does not match this node (linux)"
    if _list(spec.get("resourceClaims")):
        return "spec.resourceClaims (dynamic resource allocation) is not supported by Edged"
    if _dict(spec.get("resources")):
        return "spec.resources (pod-level resources) is not supported by Edged"
    policy = _dict(spec.get("securityContext")).get("supplementalGroupsPolicy")
    if policy not in (None, "Merge"):
        return f"spec.securityContext.supplementalGroupsPolicy {policy} is not supported"
    if _list(spec.get("ephemeralContainers")):
        return "ephemeral containers are not supported by Edged"
    for key in ("initContainers", "containers"):
        for container in _list(spec.get(key)):
            problem = _container_refusal(key, _dict(container))
            if problem:
                return problem
    return ""


def _container_refusal(key: str, container: Mapping[str, Any]) -> str:
    name = container.get("name")
    where = f"{key}[{name}]"
    if _list(_dict(container.get("resources")).get("claims")):
        return f"{where}.resources.claims (dynamic resource allocation) is not supported"
    if _list(container.get("volumeDevices")):
        return f"{where}.volumeDevices (raw block volumes) are not supported by Edged"
    if key == "containers" and container.get("restartPolicy") is not None:
        return f"{where}.restartPolicy on a regular container is not supported by Edged"
    if _list(container.get("restartPolicyRules")):
        return f"{where}.restartPolicyRules are not supported by Edged"
    for mount in _list(container.get("volumeMounts")):
        mode = _dict(mount).get("recursiveReadOnly")
        if mode == "Enabled":
            return (f"{where}: volumeMount {_dict(mount).get('name')!r} recursiveReadOnly "
                    "Enabled needs a runtime that supports it (containerd 1.6 does not)")
    for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = _dict(container.get(probe_key))
        if probe and not any(k in probe for k in ("exec", "httpGet", "tcpSocket", "grpc")):
            return f"{where}.{probe_key} has no handler"
    for hook_key in ("postStart", "preStop"):
        hook = _dict(_dict(container.get("lifecycle")).get(hook_key))
        if hook and not any(k in hook for k in ("exec", "httpGet", "sleep")):
            return f"{where}.lifecycle.{hook_key}: only exec, httpGet and sleep handlers " \
                   "are supported"
    if _dict(container.get("lifecycle")).get("stopSignal"):
        return f"{where}.lifecycle.stopSignal is not supported by containerd 1.6"
    return ""
