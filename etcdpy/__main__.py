"""``python -m etcdpy``: the same entry point as the ``etcdpy`` console script."""

from etcdpy.cli import main

main()
