"""pykubeedge.edge."""
