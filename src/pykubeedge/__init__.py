"""pykubeedge: KubeEdge's cloudcore, edgecore and keadm, in Python."""

__version__ = "0.1.0"
