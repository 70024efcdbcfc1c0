"""``python -m pykubeedge.cloud``: the same as the ``cloudcore`` command."""

from pykubeedge.cloud.app import main

main()
