"""What a plugin author imports: serve(), type registration, host services, NullPlugin.

Imports nothing else of ours, so it can ship as a small distribution of its own.
"""
