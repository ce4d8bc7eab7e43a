"""Interop tests: pm-plugins against Go peers that speak the PR #834 wire (see gobuild)."""
