"""Running verified plugins: start their processes, speak go-plugin's gRPC protocol to them,
serve the host services, and dispatch decisions, reports, DNS questions and hooks; the
reference host behind `pm-plugins boot` and its control socket.

What may run, and in what order, is decided offline by `loader`; this package runs exactly
that. It uses `loader`, `keys` and `pm_plugin`'s stubs, and nothing here imports
`registry_client`, `index` or `cli`.
"""

import os

# grpcio's EventEngine adds I/O threads and about six context switches to every call; its
# polling engine answers a decision 10-15% sooner here (bench/runtime.py). It only takes
# effect before grpc is first imported, and a value the user set wins.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client,-event_engine_listener")
