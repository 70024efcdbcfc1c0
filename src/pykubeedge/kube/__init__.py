"""pykubeedge.kube."""
