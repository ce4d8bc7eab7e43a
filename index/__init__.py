"""For registry maintainers: build, sign and publish the TUF index (uses `keys`)."""
