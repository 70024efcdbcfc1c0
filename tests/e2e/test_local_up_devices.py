"""local-up's device half: edgecore's internal mosquitto (mqttMode internal) and the demo
DeviceModel and Device bound to the edge node, reporting through it into its DeviceStatus."""

from __future__ import annotations

import pytest

from pykubeedge.keadm.localup import DEMO_DEVICE, LocalUp
from pykubeedge.kube.resources import DEVICESTATUSES
from tests.conftest import eventually
from tests.mosquitto import Probe

pytestmark = pytest.mark.integration


async def test_the_internal_broker_and_the_demo_device(local: LocalUp) -> None:
    assert local.mosquitto_sub == (f"mosquitto_sub -h 127.0.0.1 -p {local.mqtt_port} -v -t "
                                   "'$hw/events/#'")
    topic = f"$hw/events/device/default/{DEMO_DEVICE}/twin/update/result"
    async with Probe(local.mqtt_port) as probe:
        await probe.subscribe(topic)
        result = (await probe.next(topic, timeout=30)).json()
    assert result["twin"]["temperature"]["actual"]["value"] in {str(v) for v in range(20, 26)}
    assert local.kube is not None
    kube = local.kube

    async def reported() -> bool:
        status = (await kube.get(DEVICESTATUSES, DEMO_DEVICE, namespace="default"))["status"]
        twins = status.get("twins") or []
        return status.get("state") == "online" and bool(twins) and \
            twins[0]["reported"]["value"] in {str(v) for v in range(20, 26)}

    await eventually(reported, timeout=30, what="the demo device's reports in its DeviceStatus")
