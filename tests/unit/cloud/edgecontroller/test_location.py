"""LocationCache: which node needs which ConfigMap/Secret, gained and lost."""

from __future__ import annotations

from pykubeedge.cloud.edgecontroller.location import LocationCache, pod_references


def pod(name: str, node: str, *, cms: tuple[str, ...] = (), secret: str | None = None) -> dict:
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    spec["volumes"] = [{"name": c, "configMap": {"name": c}} for c in cms]
    if secret:
        spec["containers"][0]["env"] = [{"name": "S", "valueFrom": {
            "secretKeyRef": {"name": secret, "key": "k"}}}]
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"}, "spec": spec}


def test_references_cover_volumes_env_envfrom_pull_secrets_and_projected() -> None:
    p = pod("a", "n1", cms=("cm1",), secret="s1")
    p["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "cm2"}}]
    p["spec"]["imagePullSecrets"] = [{"name": "pull"}]
    p["spec"]["volumes"].append({"name": "proj", "projected": {"sources": [
        {"configMap": {"name": "cm3"}}, {"secret": {"name": "s2"}}]}})
    assert pod_references(p) == {("configmap", "ns", n) for n in ("cm1", "cm2", "cm3")} | {
        ("secret", "ns", n) for n in ("s1", "pull", "s2")}


def test_gained_and_lost_per_node() -> None:
    loc = LocationCache()
    gained, lost = loc.update_pod(pod("a", "n1", cms=("cm",)))
    assert gained == {("configmap", "ns", "cm")} and lost == set()
    gained, lost = loc.update_pod(pod("b", "n1", cms=("cm",)))
    assert gained == set()  # the node had it already
    assert loc.nodes_for("configmap", "ns", "cm") == {"n1"}
    assert loc.delete_pod(pod("a", "n1")) == set()  # b still uses it
    assert loc.delete_pod(pod("b", "n1")) == {("configmap", "ns", "cm")}
    assert not loc.node_uses("n1", "configmap", "ns", "cm")
    loc.update_pod(pod("c", "n2", cms=("x",)))
    gained, lost = loc.update_pod(pod("c", "n2", cms=("y",)))
    assert gained == {("configmap", "ns", "y")} and lost == {("configmap", "ns", "x")}
    assert loc.pod_node("ns", "c") == ("n2", "u-c")
    assert loc.pods_on("n2") == {"ns/c"}
