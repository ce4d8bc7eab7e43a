"""Reading a maintainer's published index back as a user's client would (`index verify`).

Why this exists: the only proof that a published index works is a TUF client that trusts
nothing but the repository's first root walking it: every root since v1, timestamp,
snapshot, every targets role and every target file. That client is `RegistryClient`, so the
check lives on the users' side; `index` (the maintainers' library) may not import it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from index import IndexRepo, IndexRepoError
from registry_client.tuf_client import IndexState, RegistryClient

__all__ = ["ReadBack", "read_back"]


@dataclass(frozen=True)
class ReadBack:
    """What a client starting from root v1 saw in ``published``."""

    published: Path
    state: IndexState
    targets: int
    releases: int
    plugins: int
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, object]:
        """The figures `index verify --json` prints."""
        return {
            "root_version": self.state.root_version,
            "timestamp_version": self.state.timestamp_version,
            "snapshot_version": self.state.snapshot_version,
            "targets": self.targets,
            "releases": self.releases,
            "plugins": self.plugins,
            "warnings": self.warnings,
        }


def read_back(repo_dir: Path) -> ReadBack:
    """Refresh ``repo_dir/published`` from root v1 and download every target.

    Raises:
        IndexRepoError: nothing is published yet, or a target of the repository is not
            visible to clients.
        RegistryError: the client refused the published metadata or a file.
    """
    with IndexRepo.open(repo_dir) as repo:
        first_root = repo.root_bytes(1)
        expected = set(repo.all_targets())
        published = repo.published_dir
    if not (published / "metadata" / "timestamp.json").is_file():
        raise IndexRepoError(f"{published} has no timestamp.json; run publish first")
    with tempfile.TemporaryDirectory(prefix="pm-plugins-verify-") as tmp:
        client = RegistryClient(repo_dir.name or "index", str(published), Path(tmp), first_root)
        state = client.refresh()
        targets = client.list_targets()
        releases = client.releases()
        for info in targets:
            client.download(info, Path(tmp) / "files").unlink()
        warnings = list(client.warnings)
    missing = sorted(expected - {t.path for t in targets})
    if missing:
        raise IndexRepoError(
            f"{len(missing)} target(s) of the repository are not visible to clients"
            f" (first: {missing[0]})"
        )
    return ReadBack(
        published=published,
        state=state,
        targets=len(targets),
        releases=len(releases),
        plugins=len({r.name for r in releases}),
        warnings=warnings,
    )
