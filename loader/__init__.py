"""What may run and in what order, decided offline at boot: plugins.json, manifests,
verification, the lock, the boot plan, dependency order, the module manager, sealing, the
journal and the state root.

Nothing here opens a network connection or speaks gRPC, and nothing here imports `host`,
`registry_client`, `index` or `cli`: running the plan is `host`'s job.
"""
