"""The interop tests' check of upstream's logs: what it flags and what it excuses (lines as
upstream v1.23.1 printed them in tests/interop)."""

from __future__ import annotations

import pytest

from tests.interop.rig import forbidden_lines

FLAGGED = [
    ('E1201 23:32:36.655268   20203 kubelet_node_status.go:105] "Unable to register node with '
     'API server" err="unmarshal message to node failed, err: json: cannot unmarshal string '
     'into Go struct field NodeResp.Err of type errors.StatusError" node="edge-node"',
     "unmarshal error"),
    ('E1201 23:32:46.558971   20203 controller.go:145] "Failed to ensure lease exists, will '
     'retry" err="unmarshal message to lease failed, err: invalid character \'l\' looking for '
     'beginning of value" interval="200ms"', "unmarshal error"),
    ("E1201 23:35:58.024823   25106 node_session.go:195] syncAckMessage err: send message to "
     "node edge-node err: timed out waiting for the condition, message: MessageID: bd2c "
     "ParentID: 120a Group: resource Source: edgecontroller Destination:  Resource: "
     "node/edge-node/default/configmap/c-cfg Operation: response", "syncAckMessage error"),
    ("E1201 23:04:22.548344   15063 imitator.go:258] failed to unmarshal message content to "
     "unstructured obj: Object 'Kind' is missing in '{\"metadata\":{\"name\":\"edge-node\","
     "\"uid\":\"5f1c\",\"creationTimestamp\":\"2026-12-01T23:04:22Z\"}}'", "unmarshal error"),
    ("E1201 00:00:00.000000       1 process.go:456] metamanager not supported operation: "
     "podlist", "not supported"),
]
EXCUSED = [
    "E1201 23:04:22.402527   15063 process.go:456] metamanager not supported operation: connect",
    "E1201 23:47:29.366382   30954 process.go:456] metamanager not supported operation: ",
    ("E1201 23:04:22.548344   15063 imitator.go:258] failed to unmarshal message content to "
     "unstructured obj: Object 'Kind' is missing in '{\"metadata\":{\"name\":\"edge-node\","
     "\"creationTimestamp\":null,\"labels\":{\"disktype\":\"test\"}}}'"),
    ("E1201 23:34:14.715305   20203 imitator.go:258] failed to unmarshal message content to "
     "unstructured obj: Object 'Kind' is missing in '{\"gracePeriodSeconds\":0,"
     "\"preconditions\":{\"uid\":\"17b79c33\"}}'"),
    ("E1201 23:47:07.625543   30954 imitator.go:258] failed to unmarshal message content to "
     "unstructured obj: Object 'Kind' is missing in '{\"metadata\":{\"name\":\"x-web\","
     "\"namespace\":\"default\",\"uid\":\"f923d1b6\"}}'"),
    ("E1201 23:05:37.902174   15861 node_session.go:195] syncAckMessage err: AckMessageQueue "
     "for node edge-node has shutdown"),
    "I1201 23:04:22.402527   15063 edged.go:362] resType is not pod or volume: resType is secret",
]


@pytest.mark.parametrize(("line", "why"), FLAGGED)
def test_a_decode_failure_an_unhandled_message_or_a_missing_ack_is_flagged(
        line: str, why: str) -> None:
    assert forbidden_lines(line) == [(why, line)]


@pytest.mark.parametrize("line", EXCUSED)
def test_what_upstream_prints_against_itself_too_is_excused(line: str) -> None:
    assert forbidden_lines(line) == []


def test_every_line_of_a_text_is_looked_at() -> None:
    text = "\n".join([EXCUSED[0], FLAGGED[0][0], EXCUSED[1], FLAGGED[2][0]])
    assert [why for why, _ in forbidden_lines(text)] == ["unmarshal error",
                                                         "syncAckMessage error"]
