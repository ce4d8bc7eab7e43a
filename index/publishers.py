"""Who may publish what: the index's known publisher keys, and what publishers sign.

Why it exists: the index is the one place that vouches for which key a plugin name belongs
to, so ``index add`` must refuse a package no key known for that name signed (a stranger's
``hosts``, or a package claiming a host module's name such as ``firewall``), and
``publish`` must refuse a publisher role that lists targets outside the paths delegated to
it, or that its publisher's keys do not sign: until now only ``index verify`` flagged them.
This is a mixin of :class:`index.repository.IndexRepo`, typed against
:class:`index.repo_base.RepoBase`.

The keys that may sign a plugin ``NAME``'s manifest:

- when ``NAME`` is delegated to a publisher role (``index delegate``), that role's keys, as
  many as its threshold;
- otherwise a key listed for ``NAME`` (or for ``*``, any name not delegated) in
  ``<repo>/publishers.json``, which ``pm-plugins index publishers add|remove|list`` keeps::

      {"format": 1, "keys": {"<key id>": {"public": "<base64>", "label": "Acme",
                                          "plugins": ["hosts", "allowlist"]}}}

No name of a host module (:data:`loader.host_modules.CORE_MODULES`) is ever accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# python-tuf re-exports these names without __all__ (mypy strict: ignore).
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import DelegatedRole, Targets  # type: ignore[attr-defined]

from index import paths
from index.errors import IndexRepoError
from index.keyring import public_key_of
from index.repo_base import RepoBase, _canonical, _part, _write_file
from keys import dsse, ed25519, strict_json
from keys.errors import KeysError
from loader.host_modules import CORE_MODULES
from loader.verify import MANIFEST_PAYLOAD_TYPE

__all__ = ["ANY_PLUGIN", "PUBLISHERS_FILE", "KnownPublisher", "PublishersMixin", "check_roles"]

PUBLISHERS_FILE = "publishers.json"
ANY_PLUGIN = "*"
_FORMAT = 1
_MAX_LABEL = 64


@dataclass(frozen=True)
class KnownPublisher:
    """A publisher key the index knows, and the plugin names it may sign (``*``: any name
    not delegated)."""

    key_id: str
    label: str
    plugins: tuple[str, ...]
    public_key: Ed25519PublicKey = field(compare=False, repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "label": self.label,
            "plugins": list(self.plugins),
            "public": ed25519.public_key_to_text(self.public_key),
        }


def refuse_host_module(name: str, where: str) -> None:
    """A plugin may not take the name of one of the host's own modules."""
    if name in CORE_MODULES:
        raise IndexRepoError(
            f"{where}: {name} is the name of a host module, which no plugin may take"
        )


def _verifies(data: bytes, key_id: str, key: Ed25519PublicKey) -> bool:
    try:
        dsse.verify(data, {key_id: key}, 1, payload_type=MANIFEST_PAYLOAD_TYPE)
    except KeysError:
        return False
    return True


def _short(key_ids: Sequence[str]) -> str:
    return ", ".join(k[:16] for k in key_ids) or "no key"


class PublishersMixin(RepoBase):
    """The known publisher keys, the check of a package's signers, and ``check_roles``."""

    # -- the file ---------------------------------------------------------------------------

    def publishers(self) -> list[KnownPublisher]:
        """Every key in ``publishers.json`` (none if the file is absent)."""
        file = self.path / PUBLISHERS_FILE
        if file.is_symlink():  # who may sign what: never read through a link
            raise IndexRepoError(f"{file} is a symbolic link; refusing to read it")
        if not file.exists():
            return []
        where = str(file)
        try:
            doc = strict_json.load(file, source=where)
            strict_json.expect(doc, dict, where=where, what="the publishers file")
            if strict_json.require(doc, "format", int, where=where) != _FORMAT:
                raise IndexRepoError(f"{where}: format is not {_FORMAT}")
            found = []
            for kid, entry in strict_json.require(doc, "keys", dict, where=where).items():
                at = f"{where}: key {kid[:16]}"
                strict_json.expect(entry, dict, where=at, what="the entry")
                public = ed25519.public_key_from_text(
                    strict_json.require(entry, "public", str, where=at), source=at
                )
                label = strict_json.require(entry, "label", str, where=at)
                names = strict_json.require(entry, "plugins", list, where=at)
                for n in names:
                    strict_json.expect(n, str, where=at, what="a plugin name")
                if ed25519.key_id(public) != kid:
                    raise IndexRepoError(f"{at}: the key id does not match the public key")
                found.append(KnownPublisher(kid, label, tuple(names), public))
        except KeysError as e:
            raise IndexRepoError(f"{e}; the publishers file is damaged") from e
        return found

    def _save_publishers(self, found: Sequence[KnownPublisher]) -> None:
        keys = {}
        for p in found:
            entry = p.to_json()
            del entry["key_id"]
            keys[p.key_id] = entry
        _write_file(self.path / PUBLISHERS_FILE, _canonical({"format": _FORMAT, "keys": keys}))

    def add_publisher(
        self, public_key: Ed25519PublicKey, plugins: Sequence[str], *, label: str = ""
    ) -> KnownPublisher:
        """Let ``public_key`` sign releases of ``plugins`` (names, or ``*`` for any name not
        delegated); a key already known gets these names too."""
        if not plugins:
            raise IndexRepoError("a publisher key needs at least one plugin name (or *)")
        where = f"publisher key {ed25519.key_id(public_key)[:16]}"
        for name in plugins:
            if name != ANY_PLUGIN:
                _part(paths.check_name, name, where)
                refuse_host_module(name, where)
        if len(label) > _MAX_LABEL or any(not ch.isprintable() for ch in label):
            raise IndexRepoError(f"{where}: the label must be printable, {_MAX_LABEL} at most")
        kid = ed25519.key_id(public_key)
        found = {p.key_id: p for p in self.publishers()}
        old = found.get(kid)
        names = tuple(dict.fromkeys([*(old.plugins if old else ()), *plugins]))
        found[kid] = KnownPublisher(kid, label or (old.label if old else ""), names, public_key)
        self._save_publishers(list(found.values()))
        return found[kid]

    def remove_publisher(self, key_id: str) -> KnownPublisher:
        """Forget a publisher key (its full id, or a prefix of at least 8 characters that
        names one key); releases it signed stay in the index."""
        found = self.publishers()
        hits = [p for p in found if len(key_id) >= 8 and p.key_id.startswith(key_id)]
        if len(hits) != 1:
            what = "names more than one" if hits else "names no"
            raise IndexRepoError(f"{key_id!r} {what} publisher key of this index")
        self._save_publishers([p for p in found if p is not hits[0]])
        return hits[0]

    # -- who may sign a plugin --------------------------------------------------------------

    def signing_keys_for(self, name: str) -> tuple[dict[str, Ed25519PublicKey], int, str]:
        """The keys that may sign plugin ``name``'s manifest, how many must, and whose they
        are (for messages)."""
        delegation = self.delegation_for(name)
        if delegation is not None:
            top = self._targets_md("targets").signed.delegations
            assert top is not None and top.roles is not None
            role = top.roles[delegation.role]
            keys = {kid: public_key_of(top.keys[kid]) for kid in role.keyids}
            return keys, role.threshold, f"role {delegation.role}"
        known = {
            p.key_id: p.public_key
            for p in self.publishers()
            if name in p.plugins or ANY_PLUGIN in p.plugins
        }
        return known, 1, f"the publisher keys this index knows for {name}"

    def verify_publisher(self, name: str, data: bytes, where: str) -> dsse.VerifiedPayload:
        """The manifest envelope ``data`` of a package of plugin ``name``, verified with the
        keys that may sign it; otherwise one sentence naming the package, its keys and why."""
        refuse_host_module(name, where)
        keys, threshold, whose = self.signing_keys_for(name)
        try:
            envelope = dsse.envelope_from_bytes(data, source=where)
        except KeysError as e:
            raise IndexRepoError(str(e)) from e
        listed = list(dict.fromkeys(s.keyid for s in envelope.signatures))
        try:
            return dsse.verify(
                data, keys, threshold, payload_type=MANIFEST_PAYLOAD_TYPE, source=where
            )
        except KeysError as e:
            if not keys:
                why = (
                    f"the index knows no publisher key for {name} (add one with pm-plugins"
                    " index publishers add, or delegate the name)"
                )
            elif not any(k in keys for k in listed):
                why = f"none of them is one of {whose} ({_short(list(keys))})"
            else:
                good = sum(_verifies(data, k, keys[k]) for k in listed if k in keys)
                why = f"{good} of them verify as {whose}, which needs {threshold}"
            raise IndexRepoError(f"{where} is signed by key {_short(listed)}, and {why}") from e


def check_roles(repo: RepoBase) -> None:
    """Refuse to publish a publisher role that lists a target outside the paths delegated
    to it, delegates further, goes back a version or changes without a new one, or whose
    stored metadata its publisher's keys do not sign, and a top-level targets role that lists
    a path delegated to a publisher itself (``publish`` calls it before it signs anything)."""
    top = repo._targets_md("targets").signed
    if top.delegations is None or top.delegations.roles is None:
        return
    for name, delegated in top.delegations.roles.items():
        if name.startswith(paths.PUBLISHER_ROLE_PREFIX):
            _check_role(repo, name, delegated, top)
            for target_path in top.targets:  # TUF would take it before the publisher's own
                if delegated.is_delegated_path(target_path):
                    raise IndexRepoError(
                        f"targets lists {target_path}, which is delegated to role {name}: only"
                        " that role may list it; nothing was published"
                    )


def _check_role(repo: RepoBase, name: str, delegated: DelegatedRole, top: Targets) -> None:
    md = repo._targets_md(name)
    patterns = ", ".join(delegated.paths or []) or "none"
    nothing = "nothing was published"
    for target_path in md.signed.targets:
        if not delegated.is_delegated_path(target_path):
            raise IndexRepoError(
                f"role {name} lists target {target_path}, outside its delegated paths"
                f" ({patterns}); {nothing}"
            )
    if md.signed.delegations is not None:
        raise IndexRepoError(
            f"role {name} delegates to roles of its own, which this index does not publish;"
            f" {nothing}"
        )
    listed = repo._snapshot_md().signed.meta.get(f"{name}.json")
    version = md.signed.version
    if listed is not None and version < listed.version:
        raise IndexRepoError(
            f"role {name} goes back from version {listed.version} to {version}; {nothing}"
        )
    before = repo.tree.read_metadata(f"{version}.{name}.json")
    if before is not None and before != md.to_bytes():
        raise IndexRepoError(
            f"role {name} changed but kept its published version {version}; {nothing}"
        )
    if md.signatures:
        try:
            top.verify_delegate(name, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as e:
            raise IndexRepoError(
                f"role {name} is not signed by enough of its publisher's keys; {nothing}"
            ) from e
