"""Writing the published tree so that a reader never sees a half-published index.

Why it exists: the index is plain static files that mirrors and HTTP servers copy and
serve while a maintainer publishes. The rules that keep every reader consistent:

- versioned files (``N.root.json``, ``N.snapshot.json``, ``N.targets.json``,
  ``N.<role>.json``) and targets (``<dir>/<sha256>.<basename>``) are written once, under
  their final name only when complete (a temporary file hard-linked into place, which
  fails instead of replacing). An existing file with the same bytes is left alone; one
  with *different* bytes is a refusal, never an overwrite;
- everything a new ``timestamp.json`` points at is written (and flushed to disk) first;
  ``timestamp.json`` comes last, by ``os.replace``. Until then readers keep seeing the
  previous, complete index.

``root.json`` (the newest root, for bootstrapping users) is also replaced atomically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from index.errors import IndexRepoError

__all__ = ["PublishedTree"]


def _temp_in(folder: Path, name: str, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


class PublishedTree:
    """``<repo>/published/{metadata,targets}``: create-once files, then the timestamp."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.metadata = self.root / "metadata"
        self.targets = self.root / "targets"
        self.metadata_written = 0
        self.targets_written = 0

    def _mkdirs(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)

    def put_metadata(self, filename: str, data: bytes) -> bool:
        """Write a versioned metadata file once; True if it was written now."""
        self._mkdirs(self.metadata)
        if self._create_once(self.metadata / filename, data):
            self.metadata_written += 1
            return True
        return False

    def _create_once(self, path: Path, data: bytes) -> bool:
        if path.exists():
            if path.read_bytes() != data:
                raise IndexRepoError(
                    f"{path} is already published with different content;"
                    " refusing to overwrite a versioned file"
                )
            return False
        tmp = _temp_in(path.parent, path.name, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.read_bytes() != data:
                raise IndexRepoError(
                    f"{path} is already published with different content;"
                    " refusing to overwrite a versioned file"
                ) from None
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def target_file(self, target_path: str, sha256: str) -> Path:
        """Where a target is served with consistent snapshots: ``<dir>/<sha256>.<name>``."""
        folder, _, basename = target_path.rpartition("/")
        return self.targets / folder / f"{sha256}.{basename}"

    def put_target(self, target_path: str, sha256: str, length: int, blob: Path) -> bool:
        """Publish the content ``blob`` of a target (hard link, or copy across devices)."""
        dest = self.target_file(target_path, sha256)
        if dest.exists():
            if dest.stat().st_size != length:
                raise IndexRepoError(
                    f"{dest} is already published with different content;"
                    " refusing to overwrite a target file"
                )
            return False
        self._mkdirs(dest.parent)
        try:
            os.link(blob, dest)
        except FileExistsError:
            return False
        except OSError:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
            os.close(fd)
            try:
                shutil.copyfile(blob, tmp)
                os.chmod(tmp, 0o644)
                os.link(tmp, dest)
            except FileExistsError:
                return False
            finally:
                Path(tmp).unlink(missing_ok=True)
        self.targets_written += 1
        return True

    def replace(self, filename: str, data: bytes) -> None:
        """Replace an unversioned file (``root.json``, ``timestamp.json``) atomically."""
        self._mkdirs(self.metadata)
        path = self.metadata / filename
        tmp = _temp_in(self.metadata, filename, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def flush(self) -> None:
        """Push what was written so far to disk, before the timestamp points at it."""
        os.sync()
        with contextlib.suppress(OSError):
            fd = os.open(self.metadata, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def read_metadata(self, filename: str) -> bytes | None:
        try:
            return (self.metadata / filename).read_bytes()
        except FileNotFoundError:
            return None
