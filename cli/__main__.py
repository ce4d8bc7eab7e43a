"""`python -m cli` is `pm-plugins`."""

from cli.main import main

main()
