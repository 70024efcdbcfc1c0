"""pykubeedge.cloud."""
