"""``python -m edge.cli``: the ``checkpoint`` command without the installed script."""

from edge.cli import main

main()
