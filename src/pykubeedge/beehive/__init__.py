"""pykubeedge.beehive."""
