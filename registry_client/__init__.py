"""For users: the TUF-verified registry client and the `pm-plugins` CLI (the top floor)."""
