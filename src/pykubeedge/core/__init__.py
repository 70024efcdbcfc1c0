"""pykubeedge.core."""
