"""pykubeedge.keadm."""
