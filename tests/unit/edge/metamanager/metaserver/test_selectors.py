"""Label and field selectors, as the Kubernetes API server applies them."""

from __future__ import annotations

from typing import Any

import pytest

from pykubeedge.edge.metamanager.metaserver.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)


def obj(labels: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "prod", "labels": labels or {}},
            "spec": {"nodeName": "edge-1"}, "status": {"phase": "Running"}, **fields}


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("", {}, True),
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "web"}, True),
    ("app=web", {"app": "api"}, False),
    ("app!=web", {"app": "api"}, True),
    ("app!=web", {}, True),
    ("app in (web, api)", {"app": "api"}, True),
    ("app in (web,api)", {"app": "db"}, False),
    ("app notin (web,api)", {"app": "db"}, True),
    ("app notin (web,api)", {}, True),
    ("app", {"app": ""}, True),
    ("app", {}, False),
    ("!app", {}, True),
    ("!app", {"app": "x"}, False),
    ("app in (web),tier=front", {"app": "web", "tier": "front"}, True),
    ("app in (web),tier=front", {"app": "web", "tier": "back"}, False),
    ("example.com/role=edge", {"example.com/role": "edge"}, True),
])
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector)(obj(labels)) is expected


@pytest.mark.parametrize("selector", ["app in (web", "app)", "=web", "app=we b", "a b c",
                                      "app in (web),,=x"])
def test_bad_label_selector(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


@pytest.mark.parametrize(("selector", "expected"), [
    ("", True),
    ("metadata.name=web", True),
    ("metadata.name==web", True),
    ("metadata.name!=web", False),
    ("metadata.namespace=prod,spec.nodeName=edge-1", True),
    ("spec.nodeName=edge-2", False),
    ("status.phase!=Pending", True),
    ("spec.missing=", True),
])
def test_field_selector(selector: str, expected: bool) -> None:
    assert parse_field_selector(selector)(obj()) is expected


@pytest.mark.parametrize("selector", ["metadata.name", "=x", "metadata..name=x"])
def test_bad_field_selector(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(selector)
