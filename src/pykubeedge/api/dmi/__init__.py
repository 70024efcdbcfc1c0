"""The Device Management Interface between edgecore and mappers."""

from typing import Final

# Both ends of DMI sit on one host and a unix socket: when the peer comes back it should be
# found within a second or two, not after gRPC's default reconnect backoff (up to 120 s), during
# which every call fails at once with the last connect error.
CHANNEL_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
