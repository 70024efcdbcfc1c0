"""free_port: below the kernel's ephemeral range (so no outgoing connection takes a port
between the pick and the bind) and never the same port twice in one process."""

from __future__ import annotations

import socket

from pykubeedge.devcluster.process import _ephemeral_range, free_port


def test_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    lo, hi = _ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert not any(lo <= p <= hi for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))


def test_a_taken_port_is_skipped() -> None:
    first = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", first + 1))
        s.listen()
        assert free_port() != first + 1
