"""Pod spec reading: referenced ConfigMaps/Secrets, env resolution, volume files."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from pykubeedge.edge.edged.podspec import (
    ObjectRef,
    PodConfigError,
    PodSpecError,
    containers,
    referenced_objects,
    resolve_env,
    volume_payloads,
)

CM = {"data": {"a": "1", "b": "2"}, "binaryData": {"bin": base64.b64encode(b"\x00").decode()}}
SECRET = {"data": {"token": base64.b64encode(b"s3cret").decode(), "bad": "!!"}}
OBJECTS: dict[tuple[str, str], Any] = {("configmap", "cm"): CM, ("secret", "sec"): SECRET}


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u",
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}], **spec}}


def test_references_are_collected_once_and_optional_only_if_always_optional() -> None:
    pod = _pod(
        volumes=[
            {"name": "v1", "configMap": {"name": "cm", "optional": True}},
            {"name": "v2", "secret": {"secretName": "sec"}},
            {"name": "v3", "projected": {"sources": [
                {"configMap": {"name": "root-ca"}}, {"serviceAccountToken": {}}]}},
        ],
        containers=[{"name": "c", "image": "i",
                     "env": [{"name": "X", "valueFrom": {
                         "configMapKeyRef": {"name": "cm", "key": "a"}}}],
                     "envFrom": [{"secretRef": {"name": "other", "optional": True}}]}],
    )
    assert referenced_objects(pod) == [
        ObjectRef("configmap", "ns", "cm", False),
        ObjectRef("secret", "ns", "sec", False),
        ObjectRef("configmap", "ns", "root-ca", False),
        ObjectRef("secret", "ns", "other", True),
    ]


def test_env_resolution_order_prefix_fields_and_expansion() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                    {"secretRef": {"name": "missing", "optional": True}}],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            {"name": "CM_a", "value": "override"},
            {"name": "URL", "value": "http://$(POD_IP):80/$(NOPE)/$$(X)"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL2", "value": "http://$(POD_IP)"},
            {"name": "APP", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.labels['app']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {
                "name": "cm", "key": "zzz", "optional": True}}},
        ],
    }
    env = resolve_env(_pod(), container, OBJECTS, pod_ip="10.88.0.9", host_ip="10.0.0.1")
    assert env == {
        "CM_a": "override",
        "CM_b": "2",
        "CM_bin": "\x00",
        "TOKEN": "s3cret",
        "URL": "http://$(POD_IP):80/$(NOPE)/$(X)",  # POD_IP not defined yet at that point
        "POD_IP": "10.88.0.9",
        "URL2": "http://10.88.0.9",
        "APP": "web",
        "NODE": "n1",
    }


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"envFrom": [{"configMapRef": {"name": "nope"}}]}, 'configmap "nope" not found'),
        ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]},
         'secret "nope" not found'),
        ({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]},
         "couldn't find key k in ConfigMap ns/cm"),
    ],
)
def test_env_errors(container: dict[str, Any], message: str) -> None:
    with pytest.raises(PodConfigError, match=message):
        resolve_env(_pod(), container, OBJECTS, pod_ip="", host_ip="")


def test_volume_files() -> None:
    pod = _pod(volumes=[
        {"name": "all", "configMap": {"name": "cm"}},
        {"name": "some", "configMap": {"name": "cm", "items": [{"key": "a", "path": "x/a.txt"}]}},
        {"name": "sec", "secret": {"secretName": "sec", "items": [{"key": "token", "path": "t"}]}},
        {"name": "opt", "secret": {"secretName": "absent", "optional": True}},
        {"name": "proj", "projected": {"sources": [
            {"configMap": {"name": "cm", "items": [{"key": "b", "path": "b"}]}},
            {"secret": {"name": "sec", "items": [{"key": "token", "path": "tok"}]}},
        ]}},
        {"name": "scratch", "emptyDir": {}},
    ])
    files = {name: {path: f.data for path, f in payload.items()}
             for name, payload in volume_payloads(pod, OBJECTS).items()}
    assert files == {
        "all": {"a": b"1", "b": b"2", "bin": b"\x00"},
        "some": {"x/a.txt": b"1"},
        "sec": {"t": b"s3cret"},
        "opt": {},
        "proj": {"b": b"2", "tok": b"s3cret"},
    }
    bad = _pod(volumes=[{"name": "v", "configMap": {"name": "cm", "items": [{"key": "q"}]}}])
    with pytest.raises(PodConfigError, match='volume "v" : configmap references non-existent'):
        volume_payloads(bad, OBJECTS)


@pytest.mark.parametrize(
    "spec",
    [
        None,
        {"containers": []},
        {"containers": "x"},
        {"containers": [{"image": "i"}]},
        {"containers": [{"name": "c"}]},
        {"containers": [{"name": "c", "image": "i"}, {"name": "c", "image": "j"}]},
        {"containers": [3]},
    ],
)
def test_malformed_containers(spec: Any) -> None:
    with pytest.raises(PodSpecError):
        containers({"spec": spec})
