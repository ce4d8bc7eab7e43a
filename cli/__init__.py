"""The top floor: the `pm-plugins` command, one module per subject, each command a thin layer
over a library call. Nothing else in the project imports `cli` or `click`."""
