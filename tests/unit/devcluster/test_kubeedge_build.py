"""The wrapper module that builds upstream KubeEdge from the Go module proxy."""

from __future__ import annotations

import re

import pytest

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster.kubeedge import (
    STAGING_STAND_INS,
    WRAPPER_MODULE,
    proxy_refusal,
    version_ldflags,
    wrapper_gomod,
)

# Shaped like upstream's v1.23.1 go.mod, cut short.
SAMPLE = """\
module github.com/kubeedge/kubeedge

go 1.23.12

require (
\tgithub.com/gorilla/websocket v1.5.0
\tgithub.com/kubeedge/api v0.0.0
\tgithub.com/kubeedge/beehive v0.0.0
\tk8s.io/kubernetes v1.32.10
)

require github.com/fxamacker/cbor/v2 v2.7.0 // indirect

replace (
\tgithub.com/Sirupsen/logrus v1.0.5 => github.com/sirupsen/logrus v1.0.5
\tgithub.com/gopherjs/gopherjs v0.0.0 => github.com/gopherjs/gopherjs v0.0.0-2018 // indirect
\tgithub.com/kubeedge/api => ./staging/src/github.com/kubeedge/api
\tgithub.com/kubeedge/beehive => ./staging/src/github.com/kubeedge/beehive
\tk8s.io/kubernetes => github.com/kubeedge/kubernetes v1.32.10-kubeedge1
)
"""


def _replaces(gomod: str) -> dict[str, str]:
    block = gomod.split("replace (", 1)[1].split(")", 1)[0]
    pairs = (line.split("//")[0].split("=>") for line in block.strip().splitlines())
    return {left.split()[0]: right.strip() for left, right in pairs}


def test_the_module_is_renamed_and_requires_kubeedge_at_the_version() -> None:
    out = wrapper_gomod(SAMPLE, version="v1.23.1")
    assert out.splitlines()[0] == f"module {WRAPPER_MODULE}"
    assert "module github.com/kubeedge/kubeedge" not in out
    assert re.search(r"^require github.com/kubeedge/kubeedge v1\.23\.1$", out, re.M)
    assert "go 1.23.12" in out


def test_the_local_path_replaces_point_at_the_published_stand_ins() -> None:
    replaces = _replaces(wrapper_gomod(SAMPLE))
    assert replaces["github.com/kubeedge/api"] == "github.com/kubeedge/api v1.23.0"
    assert replaces["github.com/kubeedge/beehive"] == "github.com/kubeedge/beehive v1.23.0"
    assert set(STAGING_STAND_INS) == {"github.com/kubeedge/api", "github.com/kubeedge/beehive"}
    assert "./staging" not in wrapper_gomod(SAMPLE)


def test_every_other_line_is_kept_as_upstream_wrote_it() -> None:
    out = [line for line in wrapper_gomod(SAMPLE).splitlines()
           if " => github.com/kubeedge/api v" not in line
           and " => github.com/kubeedge/beehive v" not in line]
    kept = [line for line in SAMPLE.splitlines() if "./staging" not in line]
    assert out[1:len(kept)] == kept[1:]  # the Kubernetes fork and the rest, in order
    assert "\tk8s.io/kubernetes => github.com/kubeedge/kubernetes v1.32.10-kubeedge1" in out


def test_single_line_replace_directives_are_handled_too() -> None:
    sample = SAMPLE.replace(
        "\tgithub.com/kubeedge/api => ./staging/src/github.com/kubeedge/api\n", "")
    sample += "\nreplace github.com/kubeedge/api => ../api\n"
    out = wrapper_gomod(sample)
    assert "replace github.com/kubeedge/api => github.com/kubeedge/api v1.23.0" in out


def test_an_unknown_local_replace_is_refused_with_its_name() -> None:
    sample = SAMPLE.replace("\tk8s.io/kubernetes => github.com/kubeedge/kubernetes",
                            "\tk8s.io/kubernetes => ./staging/k8s\n\tk8s.io/x => github.com/y")
    with pytest.raises(ControlPlaneError, match=r"k8s\.io/kubernetes .*\./staging/k8s"):
        wrapper_gomod(sample)


def test_a_stand_in_upstream_no_longer_replaces_is_reported() -> None:
    sample = SAMPLE.replace(
        "\tgithub.com/kubeedge/beehive => ./staging/src/github.com/kubeedge/beehive\n", "")
    with pytest.raises(ControlPlaneError, match=r"github\.com/kubeedge/beehive"):
        wrapper_gomod(sample)


def test_a_go_mod_without_a_module_line_is_refused() -> None:
    with pytest.raises(ControlPlaneError, match="no module line"):
        wrapper_gomod("go 1.23\n")


def test_the_version_is_stamped_into_upstream_pkg_version() -> None:
    flags = version_ldflags("v1.23.1", "1a7ee88d", "2026-07-15T12:01:20Z").split()
    v = "github.com/kubeedge/kubeedge/pkg/version"
    for stamp in (f"{v}.gitVersion=v1.23.1", f"{v}.gitMajor=1", f"{v}.gitMinor=23",
                  f"{v}.gitCommit=1a7ee88d", f"{v}.gitTreeState=clean",
                  f"{v}.buildDate=2026-07-15T12:01:20Z"):
        assert stamp in flags
    assert f"{v}.gitCommit=" not in " ".join(version_ldflags("v1.23.1", "", "d").split())


@pytest.mark.parametrize(("output", "expected"), [
    ("go: github.com/kubeedge/api@v1.23.1: reading "
     "https://proxy.golang.org/github.com/kubeedge/api/@v/v1.23.1.info: 403 Forbidden\n"
     "\tserver response: ...",
     "the Go module proxy refused github.com/kubeedge/api@v1.23.1: 403 Forbidden "
     "(https://proxy.golang.org/github.com/kubeedge/api/@v/v1.23.1.info)"),
    ('{"Path": "github.com/kubeedge/kubeedge", "Error": "github.com/kubeedge/kubeedge@v9.9.9: '
     'reading https://proxy.golang.org/github.com/kubeedge/kubeedge/@v/v9.9.9.info: '
     '404 Not Found\\n\\tserver response: not found"}',
     "the Go module proxy refused github.com/kubeedge/kubeedge@v9.9.9: 404 Not Found "
     "(https://proxy.golang.org/github.com/kubeedge/kubeedge/@v/v9.9.9.info)"),
    ("go: github.com/kubeedge/beehive@v1.23.0: Get \"https://proxy.golang.org/x\": "
     "dial tcp: lookup proxy.golang.org: no such host",
     "the Go module proxy could not be reached for github.com/kubeedge/beehive@v1.23.0: "
     "dial tcp: lookup proxy.golang.org: no such host"),
    ("edge/pkg/x.go:12: undefined: Foo", None),
])
def test_a_refusal_by_the_proxy_is_one_clear_line(output: str, expected: str | None) -> None:
    got = proxy_refusal(output)
    assert got == expected
    assert got is None or "\n" not in got
