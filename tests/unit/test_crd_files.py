"""Static checks of pykubeedge's CustomResourceDefinitions and the samples in deploy/samples.

No apiserver here: the schemas are checked for the structural rules kube-apiserver enforces,
and the samples are validated against them with a small validator for the OpenAPI subset the
CRDs use (unknown fields count as errors, as with ``kubectl apply --validate=strict``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

CRD_DIR = Path(str(files("pykubeedge.devcluster") / "crds"))
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "samples"
INVALID_PREFIX = "invalid-"

# file stem, group/version, plural, kind, scope, status subresource
EXPECTED_TABLE = """
devices_v1beta1_device                    devices.kubeedge.io/v1beta1         devices             Device             Namespaced  status
devices_v1beta1_devicemodel               devices.kubeedge.io/v1beta1         devicemodels        DeviceModel        Namespaced  -
devices_v1beta1_devicestatus              devices.kubeedge.io/v1beta1         devicestatuses      DeviceStatus       Namespaced  -
reliablesyncs_v1alpha1_objectsync         reliablesyncs.kubeedge.io/v1alpha1  objectsyncs         ObjectSync         Namespaced  status
reliablesyncs_v1alpha1_clusterobjectsync  reliablesyncs.kubeedge.io/v1alpha1  clusterobjectsyncs  ClusterObjectSync  Cluster     status
rules_v1_rule                             rules.kubeedge.io/v1                rules               Rule               Namespaced  -
rules_v1_ruleendpoint                     rules.kubeedge.io/v1                ruleendpoints       RuleEndpoint       Namespaced  -
"""  # noqa: E501
EXPECTED = {row.split()[0]: row.split()[1:] for row in EXPECTED_TABLE.strip().splitlines()}
# Served besides the storage version, as upstream v1.23.1 (the legacy shape, no conversion).
LEGACY_VERSIONS = {"devices_v1beta1_devicestatus": ["v1alpha2"]}

# Upstream data that is genuinely free-form; nowhere else may unknown fields survive.
FREE_FORM_FIELDS = {"configData", "protocolConfigData", "anomalyDetection", "extensions"}

# fmt: off
# The OpenAPI keywords these CRDs may use (a subset of what the apiserver accepts).
SCHEMA_KEYS = {
    "type", "description", "properties", "items", "additionalProperties", "required", "enum",
    "format", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "nullable", "default", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-map-type",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-validations",
}
PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,),
}
# fmt: on


def load_crds() -> dict[str, dict[str, Any]]:
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert len(docs) == 1, f"{path.name}: one CRD per file, found {len(docs)} documents"
        crds[path.stem] = docs[0]
    return crds


CRDS = load_crds()


def schema_of(crd: dict[str, Any], version: str) -> dict[str, Any]:
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return v["schema"]["openAPIV3Schema"]


def crd_for(api_version: str, kind: str) -> tuple[dict[str, Any], str]:
    group, _, version = api_version.rpartition("/")
    for crd in CRDS.values():
        spec = crd["spec"]
        versions = {v["name"] for v in spec["versions"] if v["served"]}
        if spec["group"] == group and spec["names"]["kind"] == kind and version in versions:
            return crd, version
    raise AssertionError(f"no CRD serves {api_version} {kind}")


def structural_errors(node: Any, path: str) -> list[str]:
    """The structural-schema rules kube-apiserver applies to apiextensions.k8s.io/v1 CRDs."""
    if not isinstance(node, dict):
        return [f"{path}: schema must be a mapping"]
    errors = [f"{path}: unsupported keyword {k!r}" for k in node.keys() - SCHEMA_KEYS]
    typ = node.get("type")
    if typ not in PY_TYPES:
        return [*errors, f"{path}: every schema node needs a type, got {typ!r}"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if preserve is not None and (preserve is not True or typ != "object"):
        errors.append(f"{path}: x-kubernetes-preserve-unknown-fields must be true on an object")
    if preserve and path.rsplit(".", 1)[-1] not in FREE_FORM_FIELDS:
        errors.append(f"{path}: unknown fields preserved outside the free-form fields")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if typ != "object" and ({"properties", "additionalProperties", "required"} & node.keys()):
        errors.append(f"{path}: object keywords on a {typ}")
    if "x-kubernetes-map-type" in node and typ != "object":
        errors.append(f"{path}: x-kubernetes-map-type on a {typ}")
    if typ == "array" and "items" not in node:
        errors.append(f"{path}: array without items")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            errors.append(f"{path}: required field {name!r} is not declared")
    for value in node.get("enum", []):
        if not isinstance(value, PY_TYPES[typ]):
            errors.append(f"{path}: enum value {value!r} is not a {typ}")
    for name, sub in node.get("properties", {}).items():
        errors += structural_errors(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        errors += structural_errors(node["additionalProperties"], f"{path}.*")
    elif "additionalProperties" in node:
        errors.append(f"{path}: additionalProperties must be a schema")
    if "items" in node:
        errors += structural_errors(node["items"], f"{path}[]")
    return errors


def validation_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Validate ``value`` against the OpenAPI subset used by the CRDs."""
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: null is not allowed"]
    typ = schema["type"]
    if not isinstance(value, PY_TYPES[typ]) or (typ != "boolean" and isinstance(value, bool)):
        return [f"{path}: expected {typ}, got {type(value).__name__}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: below {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: above {schema['maximum']}")
    if typ == "array":
        for i, item in enumerate(value):
            errors += validation_errors(schema["items"], item, f"{path}[{i}]")
    if typ == "object":
        errors += [
            f"{path}: missing required field {name!r}"
            for name in schema.get("required", [])
            if name not in value
        ]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in props:
                errors += validation_errors(props[name], item, f"{path}.{name}")
            elif isinstance(extra, dict):
                errors += validation_errors(extra, item, f"{path}.{name}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                errors.append(f"{path}: unknown field {name!r}")
    return errors


def resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    if json_path == ".metadata.creationTimestamp":
        return {"type": "string"}
    node: dict[str, Any] | None = schema
    for part in json_path.lstrip(".").split("."):
        node = node.get("properties", {}).get(part) if node else None
    return node


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_expected_crd_files_exist(stem: str) -> None:
    assert stem in CRDS, f"missing {stem}.yaml in {CRD_DIR}"


@pytest.mark.parametrize("stem", sorted(CRDS))
def test_crd_identity(stem: str) -> None:
    crd = CRDS[stem]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec, names = crd["spec"], crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{names['plural']}.{spec['group']}"
    assert names["listKind"] == f"{names['kind']}List"
    assert names["singular"] == names["kind"].lower()
    group_version, plural, kind, scope, subresource = EXPECTED[stem]
    group, version = group_version.split("/")
    assert (spec["group"], names["plural"], names["kind"]) == (group, plural, kind)
    assert spec["scope"] == scope
    assert [v["name"] for v in spec["versions"]] == [*LEGACY_VERSIONS.get(stem, []), version]
    (storage,) = [v for v in spec["versions"] if v["storage"]]
    assert storage["name"] == version
    has_status = "status" in storage.get("subresources", {})
    assert has_status == (subresource == "status")


@pytest.mark.parametrize("stem", sorted(CRDS))
def test_exactly_one_storage_version(stem: str) -> None:
    versions = CRDS[stem]["spec"]["versions"]
    assert sum(1 for v in versions if v["storage"]) == 1
    assert all(v["served"] for v in versions if v["storage"])


@pytest.mark.parametrize("stem", sorted(CRDS))
def test_served_versions_have_structural_schemas(stem: str) -> None:
    for version in CRDS[stem]["spec"]["versions"]:
        if not version["served"]:
            continue
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        # metadata may only be typed at the root; the apiserver owns its schema. (Upstream's
        # legacy DeviceStatus shape declares none.)
        if version["name"] not in LEGACY_VERSIONS.get(stem, []):
            assert schema["properties"]["metadata"] == {"type": "object"}
        assert structural_errors(schema, "") == []


@pytest.mark.parametrize("stem", sorted(CRDS))
def test_printer_columns_point_at_schema_fields(stem: str) -> None:
    for version in CRDS[stem]["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        columns = version.get("additionalPrinterColumns", [])
        assert columns, "kubectl get should show more than NAME"
        for column in columns:
            field = resolve(schema, column["jsonPath"])
            assert field is not None, f"{column['name']}: {column['jsonPath']} not in schema"
            if column["type"] == "integer":
                assert field["type"] == "integer"


def test_device_requires_model_ref() -> None:
    spec = schema_of(CRDS["devices_v1beta1_device"], "v1beta1")["properties"]["spec"]
    assert "deviceModelRef" in spec["required"]
    ref = spec["properties"]["deviceModelRef"]
    assert "name" in ref["required"]
    assert "default" not in ref["properties"]["name"], "a default would satisfy required"


def test_device_field_types() -> None:
    schema = schema_of(CRDS["devices_v1beta1_device"], "v1beta1")
    prop = schema["properties"]["spec"]["properties"]["properties"]["items"]
    desired = prop["properties"]["desired"]
    assert desired["properties"]["value"]["type"] == "string"
    assert desired["properties"]["metadata"]["additionalProperties"] == {"type": "string"}
    status = schema["properties"]["status"]["properties"]
    assert {"twins", "state", "lastOnlineTime", "reportToCloud", "reportCycle"} <= status.keys()
    twin = status["twins"]["items"]["properties"]
    assert {"propertyName", "reported", "observedDesired"} == twin.keys()


def test_device_model_enums() -> None:
    schema = schema_of(CRDS["devices_v1beta1_devicemodel"], "v1beta1")
    prop = schema["properties"]["spec"]["properties"]["properties"]["items"]["properties"]
    assert prop["type"]["enum"] == [
        "INT",
        "FLOAT",
        "DOUBLE",
        "STRING",
        "BOOLEAN",
        "BYTES",
        "STREAM",
    ]
    assert prop["accessMode"]["enum"] == ["ReadWrite", "ReadOnly"]


def test_object_sync_shape() -> None:
    for stem in ("reliablesyncs_v1alpha1_objectsync", "reliablesyncs_v1alpha1_clusterobjectsync"):
        props = schema_of(CRDS[stem], "v1alpha1")["properties"]
        assert set(props["spec"]["properties"]) == {"objectAPIVersion", "objectKind", "objectName"}
        assert set(props["status"]["properties"]) == {"objectResourceVersion"}


SAMPLES = sorted(SAMPLES_DIR.glob("*.yaml"))


def test_samples_present() -> None:
    names = {p.name for p in SAMPLES}
    assert {"device-model.yaml", "device.yaml", "invalid-device-no-model-ref.yaml"} <= names


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_matches_a_crd(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        crd, version = crd_for(doc["apiVersion"], doc["kind"])
        errors = validation_errors(schema_of(crd, version), doc, "")
        if path.name.startswith(INVALID_PREFIX):
            assert errors, f"{path.name} should be rejected by the schema"
        else:
            assert errors == []


def test_invalid_device_is_rejected_for_missing_model_ref() -> None:
    doc = yaml.safe_load((SAMPLES_DIR / "invalid-device-no-model-ref.yaml").read_text())
    schema = schema_of(CRDS["devices_v1beta1_device"], "v1beta1")
    assert validation_errors(schema, doc, "") == [".spec: missing required field 'deviceModelRef'"]


def test_device_sample_references_model_sample() -> None:
    model = yaml.safe_load((SAMPLES_DIR / "device-model.yaml").read_text())
    device = yaml.safe_load((SAMPLES_DIR / "device.yaml").read_text())
    assert device["spec"]["deviceModelRef"]["name"] == model["metadata"]["name"]
    assert device["metadata"]["namespace"] == model["metadata"]["namespace"]
    model_props = {p["name"] for p in model["spec"]["properties"]}
    assert {p["name"] for p in device["spec"]["properties"]} <= model_props
    assert device["spec"]["nodeName"] == "edge-node"


def test_validator_catches_typos() -> None:
    """The validator must not be vacuous: a misspelt or mistyped field is reported."""
    schema = schema_of(CRDS["devices_v1beta1_device"], "v1beta1")
    doc = {
        "spec": {
            "deviceModelRef": {"name": "m"},
            "nodename": "x",
            "properties": [{"name": "t", "desired": {"value": 25}}],
        }
    }
    assert validation_errors(schema, doc, "") == [
        ".spec: unknown field 'nodename'",
        ".spec.properties[0].desired.value: expected string, got int",
    ]
