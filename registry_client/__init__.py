"""For users: the TUF-verified registry client, resolve, download, install, upgrade and remove.

A library: the `pm-plugins` command over it lives in `cli`.
"""
