"""``python -m pykubeedge.edge``: the same as the ``edgecore`` command."""

from pykubeedge.edge.app import main

main()
