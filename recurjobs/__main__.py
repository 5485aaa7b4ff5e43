"""``python -m recurjobs``: the same command line as the ``recurjobs`` script."""

from recurjobs.cli import main

raise SystemExit(main())
