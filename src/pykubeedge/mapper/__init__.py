"""pykubeedge.mapper."""
