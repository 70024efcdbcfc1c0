"""pykubeedge.devcluster."""
