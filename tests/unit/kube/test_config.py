"""Kubeconfig parsing: every bad input is a one-line ConfigError naming the problem."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from pykubeedge.core.errors import ConfigError
from pykubeedge.kube.config import load_kubeconfig
from pykubeedge.transport import certs


def write(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "kubeconfig"
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


def kubeconfig(server: str = "https://127.0.0.1:6443", **user: object) -> dict:
    return {
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user or {"token": "t0k"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }


def test_token_and_ca(tmp_path: Path) -> None:
    ca = certs.new_ca("test")
    doc = kubeconfig()
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        ca.cert_pem()).decode()
    cfg = load_kubeconfig(write(tmp_path, doc))
    assert cfg.server == "https://127.0.0.1:6443" and cfg.token == "t0k"
    assert cfg.ssl_context() is not None


def test_client_cert_files_relative_to_kubeconfig(tmp_path: Path) -> None:
    ca = certs.new_ca("test")
    leaf = certs.issue(ca, "admin", client=True)
    (tmp_path / "c.crt").write_bytes(leaf.cert_pem())
    (tmp_path / "c.key").write_bytes(leaf.key_pem())
    cfg = load_kubeconfig(write(tmp_path, kubeconfig(**{"client-certificate": "c.crt",
                                                        "client-key": "c.key"})))
    assert cfg.client_cert_data == leaf.cert_pem()
    assert cfg.ssl_context() is not None


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("a: [1, 2\nb: }", "not valid YAML"),
    ("- a list", "not a YAML mapping"),
    ({"current-context": "x"}, "no context named 'x'"),
    (kubeconfig(server="127.0.0.1:6443"), "is not an http(s) URL"),
    (kubeconfig(**{"client-certificate-data": "@@@", "client-key-data": "x"}),
     "not valid base64"),
    (kubeconfig(**{"client-certificate": "/nonexistent/c.crt"}), "cannot be read"),
])
def test_bad_kubeconfig_is_one_line_error(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "kubeconfig" if content is None else write(tmp_path, content)
    with pytest.raises(ConfigError) as exc:
        load_kubeconfig(path)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert str(path) in str(exc.value)


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_kubeconfig(tmp_path)
