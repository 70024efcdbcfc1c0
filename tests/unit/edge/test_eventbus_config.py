"""EventBus settings: upstream's config keys and defaults, broker URLs, TLS files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pykubeedge.core.config import EdgeCoreConfig, parse_model
from pykubeedge.core.errors import ConfigError
from pykubeedge.edge.eventbus.eventbus import EventBusSettings, _valid_topic
from pykubeedge.edge.eventbus.mqtt import BrokerTLS, parse_broker_url


def test_upstream_keys_and_defaults() -> None:
    cfg = EdgeCoreConfig()
    bus = cfg.modules.eventBus.model_dump()
    assert bus == {
        "enable": True, "mqttQOS": 0, "mqttRetain": False, "mqttSessionQueueSize": 100,
        "mqttServerInternal": "tcp://127.0.0.1:1884", "mqttServerExternal": "tcp://127.0.0.1:1883",
        "mqttSubClientID": "", "mqttPubClientID": "", "mqttUsername": "", "mqttPassword": "",
        "mqttMode": 2, "eventBusTLS": {
            "enable": False, "tlsMqttCAFile": "/etc/kubeedge/ca/rootCA.crt",
            "tlsMqttCertFile": "/etc/kubeedge/certs/server.crt",
            "tlsMqttPrivateKeyFile": "/etc/kubeedge/certs/server.key"}}
    assert cfg.modules.deviceTwin.model_dump() == {"enable": True, "dmiSockPath": "/etc/kubeedge/"}
    s = EventBusSettings.from_config(cfg)
    assert (s.external, s.internal) == (True, False)


@pytest.mark.parametrize(("mode", "internal", "external"), [(0, True, False), (1, True, True),
                                                           (2, False, True)])
def test_modes(mode: int, internal: bool, external: bool) -> None:
    s = EventBusSettings("n", mode=mode)
    assert (s.internal, s.external) == (internal, external)


def test_a_mode_outside_upstreams_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mqttMode"):
        parse_model({"modules": {"eventBus": {"mqttMode": 3}}}, EdgeCoreConfig, "edgecore.yaml")


@pytest.mark.parametrize("url", ["127.0.0.1:1883", "http://127.0.0.1:1883", "tcp://:1883",
                                 "tcp://127.0.0.1:99999", "tcp://127.0.0.1:1883/x", ""])
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_broker_url(url)


def test_broker_urls() -> None:
    assert parse_broker_url("ssl://broker.local").port == 8883
    assert parse_broker_url("tcp://[::1]:1884").host == "::1"


def test_unloadable_tls_files_are_one_config_error(tmp_path: Path) -> None:
    tls = BrokerTLS(True, str(tmp_path / "ca.crt"), str(tmp_path / "c.crt"),
                    str(tmp_path / "k.key"))
    with pytest.raises(ConfigError, match="eventBusTLS files cannot be loaded"):
        tls.context()


@pytest.mark.parametrize(("topic", "wildcards", "ok"), [
    ("a/b", False, True), ("a/+", False, False), ("a/#", True, True), ("a/#/b", True, False),
    ("a/b+", True, False), ("", True, False), ("a\x00b", False, False),
])
def test_topic_rules(topic: str, wildcards: bool, ok: bool) -> None:
    assert _valid_topic(topic, wildcards=wildcards) is ok


def test_rule_message_limit_is_an_extra_key() -> None:
    cfg = parse_model({"modules": {"eventBus": {"ruleMessageLimit": 7}}}, EdgeCoreConfig,
                      "edgecore.yaml")
    assert EventBusSettings.from_config(cfg).rule_limit == 7
    assert EventBusSettings.from_config(EdgeCoreConfig()).rule_limit == 1000
    bad = parse_model({"modules": {"eventBus": {"ruleMessageLimit": 0}}}, EdgeCoreConfig,
                      "edgecore.yaml")
    with pytest.raises(ConfigError, match="ruleMessageLimit"):
        EventBusSettings.from_config(bad)


def test_servicebus_and_router_keys_and_defaults() -> None:
    from pykubeedge.core.config import CloudCoreConfig

    assert EdgeCoreConfig().modules.serviceBus.model_dump() == {
        "enable": False, "server": "127.0.0.1", "port": 9060, "timeout": 60}
    assert CloudCoreConfig().modules.router.model_dump() == {
        "enable": False, "address": "0.0.0.0", "port": 9443, "restTimeout": 60}
