"""The hub protocol's rules with an injected clock: ACK classification, supersede, resend,
requeue with backoff, reconnect, keepalive. No sleeps."""

from __future__ import annotations

from pykubeedge.core.hubproto import (
    MAX_RESENDS,
    RESEND_INTERVAL_S,
    KeepaliveDeadline,
    NodeQueue,
    Pushed,
    needs_ack,
    rv_newer,
)
from pykubeedge.core.message import Message, new_message, response


def pod(name: str, rv: str, op: str = "update", uid: str | None = None) -> Message:
    return new_message(
        source="edgecontroller",
        group="resource",
        operation=op,
        resource=f"node/e1/default/pod/{name}",
        resourceversion=rv,
        content={"metadata": {"name": name, "uid": uid or f"uid-{name}", "resourceVersion": rv}},
    )


def test_needs_ack_follows_the_contract() -> None:
    assert needs_ack(pod("a", "1"))
    assert needs_ack(
        new_message(
            source="edgecontroller",
            group="resource",
            operation="update",
            resource="node/e1/null/node/e1",
        )
    )
    assert not needs_ack(
        new_message(
            source="edgecontroller",
            group="resource",
            operation="response",
            resource="node/e1/null/node/e1",
        )
    )
    assert not needs_ack(
        new_message(
            source="edgecontroller",
            group="resource",
            operation="patch",
            resource="node/e1/default/podpatch/a",
        )
    )
    assert not needs_ack(
        new_message(
            source="router_eventbus", group="user", operation="publish", resource="node/e1/topic"
        )
    )
    assert not needs_ack(
        new_message(
            source="devicecontroller",
            group="twin",
            operation="update",
            resource="node/e1/membership",
        )
    )
    assert not needs_ack(response(pod("a", "1"), "OK"))


def test_rv_comparison_never_fails_on_non_numeric() -> None:
    assert rv_newer("10", "9")
    assert not rv_newer("9", "10")
    assert rv_newer("abc", "9")  # unorderable but different: newer
    assert not rv_newer("abc", "abc")


def test_ack_stops_resending() -> None:
    q = NodeQueue()
    m = pod("a", "1")
    assert q.push(m, 0) is Pushed.QUEUED
    assert q.next(0) is m
    assert q.next(0) is None
    assert q.ack(m.msg_id, 1) is m
    assert q.due(100) == []
    assert len(q) == 0


def test_unacked_is_resent_every_interval_then_requeued_with_backoff() -> None:
    q = NodeQueue()
    m = pod("a", "1")
    q.push(m, 0)
    q.next(0)
    t = 0.0
    for _ in range(MAX_RESENDS):
        assert q.due(t + RESEND_INTERVAL_S - 0.01) == []
        t += RESEND_INTERVAL_S
        assert q.due(t) == [m]
    t += RESEND_INTERVAL_S
    assert q.due(t) == []  # gave up on this round: requeued, not dropped
    assert q.inflight == 0
    assert q.next(t) is None  # backoff holds it
    assert q.next_deadline() == t + 1.0
    assert q.next(t + 1.0) is m  # and then it goes again


def test_newer_version_supersedes_pending_and_stale_is_dropped() -> None:
    q = NodeQueue()
    old, new = pod("a", "5"), pod("a", "6")
    q.push(old, 0)
    assert q.push(new, 0) is Pushed.QUEUED
    assert q.push(pod("a", "4"), 0) is Pushed.DROPPED_STALE
    assert q.next(0) is new  # the old one is never sent
    assert q.next(0) is None
    assert len(q) == 1


def test_one_version_per_object_on_the_wire() -> None:
    q = NodeQueue()
    v1, v2, other = pod("a", "1"), pod("a", "2"), pod("b", "1")
    q.push(v1, 0)
    assert q.next(0) is v1
    q.push(v2, 0)
    q.push(other, 0)
    assert q.next(0) is other  # b may pass; a's v2 waits for v1's ACK
    assert q.next(0) is None
    q.ack(v1.msg_id, 0)
    assert q.next(0) is v2


def test_delete_supersedes_and_nothing_supersedes_a_delete() -> None:
    q = NodeQueue()
    q.push(pod("a", "5"), 0)
    delete = pod("a", "5", op="delete")
    assert q.push(delete, 0) is Pushed.QUEUED
    assert q.push(pod("a", "9"), 0) is Pushed.DROPPED_STALE
    assert q.next(0) is delete


def test_ack_message_without_version_is_dropped() -> None:
    q = NodeQueue()
    assert q.push(pod("a", ""), 0) is Pushed.DROPPED_NO_VERSION


def test_window_bounds_inflight_and_noack_goes_first() -> None:
    q = NodeQueue(window=2)
    msgs = [pod(f"p{i}", "1") for i in range(3)]
    for m in msgs:
        q.push(m, 0)
    ping = new_message(
        source="edgecontroller",
        group="resource",
        operation="patch",
        resource="node/e1/default/podpatch/x",
    )
    q.push(ping, 0)
    assert q.next(0) is ping
    assert [q.next(0), q.next(0), q.next(0)] == [msgs[0], msgs[1], None]
    q.ack(msgs[0].msg_id, 0)
    assert q.next(0) is msgs[2]


def test_noack_queue_is_bounded() -> None:
    q = NodeQueue(noack_limit=2)
    mk = lambda: new_message(  # noqa: E731
        source="router",
        group="user",
        operation="publish",
        resource="node/e1/t",
    )
    assert [q.push(mk(), 0) for _ in range(3)][-1] is Pushed.DROPPED_FULL
    assert q.dropped == 1


def test_reconnect_puts_inflight_back_in_front_in_order() -> None:
    q = NodeQueue()
    a, b, c = pod("a", "1"), pod("b", "1"), pod("c", "1")
    for m in (a, b, c):
        q.push(m, 0)
    q.next(0)
    q.next(0)  # a, b in flight; c pending
    assert q.requeue_inflight() == 2
    assert [q.next(1), q.next(1), q.next(1)] == [a, b, c]


def test_keepalive_deadline() -> None:
    k = KeepaliveDeadline(30, now=0)
    k.keepalive(20)
    assert not k.expired(49)
    assert k.expired(50.5)


def test_deep_window_at_a_slow_edge_is_not_resent_while_it_acks_in_order() -> None:
    """The resend clock of a pipelined message starts when the ones before it are ACKed:
    a slow edge working through its window is not sent the same messages again."""
    q = NodeQueue(window=8)
    msgs = [pod(f"p{i}", "1") for i in range(8)]
    for m in msgs:
        q.push(m, 0)
    assert [q.next(0) for _ in msgs] == msgs
    t = 0.0
    for m in msgs:  # one ACK every 4 s: the last waits 32 s, but never 5 s without progress
        t += RESEND_INTERVAL_S - 1
        assert q.due(t) == []
        assert q.ack(m.msg_id, t) is m
    assert q.inflight == 0


def test_message_lost_behind_progress_is_still_resent() -> None:
    q = NodeQueue(window=3)
    a, b, c = pod("a", "1"), pod("b", "1"), pod("c", "1")
    for m in (a, b, c):
        q.push(m, 0)
    assert [q.next(0), q.next(0), q.next(0)] == [a, b, c]
    q.ack(b.msg_id, 1)  # later ones ACKed, the oldest not: it was lost
    q.ack(c.msg_id, 2)
    assert q.due(RESEND_INTERVAL_S - 0.01) == []
    assert q.due(RESEND_INTERVAL_S) == [a]


def test_held_back_objects_wait_out_their_backoff_without_blocking_others() -> None:
    q = NodeQueue(resend_interval=1, max_resends=0)
    slow = [pod(f"s{i}", "1") for i in range(50)]
    for m in slow:
        q.push(m, 0)
    for _ in slow:
        q.next(0)
    assert len(q.due(1.0)) == 0  # no resends allowed: all 50 are held back for 1 s
    assert q.inflight == 0 and len(q) == 50
    fresh = pod("fresh", "1")
    q.push(fresh, 1.0)
    assert q.next(1.0) is fresh  # not stuck behind the held ones
    newer = pod("s0", "2")
    assert q.push(newer, 1.5) is Pushed.QUEUED  # replaces the held version...
    assert q.next(1.5) is None  # ...and waits out the backoff too
    assert q.next_deadline() == 2.0
    released = [q.next(2.0) for _ in range(51)]
    assert released[0] is newer and None in released  # window of 256: 50 go, then none
    assert sum(m is not None for m in released) == 50


def test_a_second_delete_of_an_object_already_being_deleted_is_dropped() -> None:
    q = NodeQueue()
    assert q.push(pod("a", "", op="delete"), 0) is Pushed.QUEUED
    assert q.push(pod("a", "", op="delete"), 0) is Pushed.DROPPED_STALE  # pending already
    sent = q.next(0)
    assert sent is not None
    assert q.push(pod("a", "", op="delete"), 0) is Pushed.DROPPED_STALE  # in flight
    q.ack(sent.msg_id, 1)
    assert q.push(pod("a", "", op="delete"), 1) is Pushed.QUEUED  # ACKed: a new one may go
