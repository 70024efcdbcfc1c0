"""pykubeedge.transport."""
