"""Ed25519 keys, DSSE envelopes and the trust store. Imports nothing of ours."""
