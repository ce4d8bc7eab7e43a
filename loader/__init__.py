"""The host side: start plugin processes, speak go-plugin's gRPC protocol to them, serve
the host services, and dispatch decisions, reports, DNS questions and hooks.

Runs at boot and offline: nothing here opens a network connection beyond the plugins' own
unix sockets, and nothing here imports `registry_client` or `index`.
"""
