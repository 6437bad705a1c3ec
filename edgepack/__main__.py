"""``python -m edgepack ARGS``: the same as the ``edgepack`` console script."""

from edgepack.cli import main

main()
