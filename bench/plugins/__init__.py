"""Plugin executables the benchmarks start (run by path, never imported by the host)."""
