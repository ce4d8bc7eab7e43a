"""The host side: start plugin processes, speak go-plugin's gRPC protocol to them, serve
the host services, and dispatch decisions, reports, DNS questions and hooks.

Runs at boot and offline: nothing here opens a network connection beyond the plugins' own
unix sockets, and nothing here imports `registry_client` or `index`.
"""

import os

# grpcio's EventEngine adds I/O threads and about six context switches to every call; its
# polling engine answers a decision 10-15% sooner here (bench/runtime.py). It only takes
# effect before grpc is first imported, and a value the user set wins.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener")
