"""`python -m fdbsync.cli`: the same as the `fdbsync` command."""

from .app import main

main()
