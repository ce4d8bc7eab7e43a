"""`python -m registry_client` is `pm-plugins`."""

from registry_client.cli import main

main()
