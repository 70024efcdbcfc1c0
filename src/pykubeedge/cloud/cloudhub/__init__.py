"""pykubeedge.cloud.cloudhub: the hub edge nodes connect to (WebSocket, certificates)."""
