"""pykubeedge.edge.edgehub: the edge side of the cloud channel (connection, certificates)."""
