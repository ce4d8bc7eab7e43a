"""Ed25519 keys, DSSE envelopes and the trust store. Imports nothing of ours.

- ``keys.errors``: ``KeysError`` and its leaves (``StrictJSONError``, ``KeyFileError``,
  ``SignatureError``, ``TrustStoreError``); each message is one sentence for the user.
- ``keys.strict_json``: strict JSON reading (``loads``/``load``) and exact field types
  (``require``/``optional``/``expect``) for every file the tool reads.
- ``keys.ed25519``: generate keys, ``key_id``, encrypted private key files, public keys
  as base64 text, ``passphrase_from_env``.
- ``keys.dsse``: DSSE v1 ``pae``, ``sign``, ``verify`` (threshold of distinct trusted keys).
- ``keys.store``: ``TrustStore`` (trusted keys with levels, revoked ids) with load/save.
"""
