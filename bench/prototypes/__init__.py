"""Prototypes measured while investigating missed targets (not run by `make bench`).

`python -m bench.prototypes.probe` prints its measurements; see its docstring.
"""
