"""The state root: one directory that holds everything a host and its user chose or trust.

Why this exists: every command, the loader at boot and the tests must agree on where
`plugins.json`, the trust store and the installed plugins live; naming the paths in one
place keeps them from drifting. The root is `--home`, else `$PM_PLUGINS_HOME`, else the
platform's user data directory (platformdirs).

    plugins.json                 what runs (the PR's format)
    plugins.lock                 name -> version, sha256, signer key id
    plugins/<name>/<version>/    an installed release: artifact + manifest.dsse.json
    data/<name>/                 a plugin's own data folder, its base_directory
    trust.json                   trusted publisher keys and revoked key ids
    host.json                    the host's own settings (dev mode, disabled modules)
    config.json                  values a person set for plugins' registered config options
    run/host.sock                the booted host's control socket (owner only)
    keys/                        the user's own publisher keys (`keys generate`)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from keys import strict_json
from keys.errors import StrictJSONError
from loader.errors import LoaderError

HOME_ENV = "PM_PLUGINS_HOME"
DEV_MODE_ENV = "PM_PLUGINS_DEV_MODE"
SANDBOX_MODES = ("required", "best-effort")
#: The longest a decider's cached answer is reused unless host.json says otherwise (seconds);
#: the same as host.decision_cache.DEFAULT_CACHE_MAX_TTL (the loader imports nothing of host).
DECISION_CACHE_MAX_TTL = 300.0


@dataclass(frozen=True)
class Home:
    """The paths of one state root."""

    root: Path

    @classmethod
    def locate(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        """`explicit` (the `--home` option), else `$PM_PLUGINS_HOME`, else platformdirs."""
        if explicit:
            return cls(Path(explicit).expanduser().absolute())
        env = os.environ.get(HOME_ENV)
        if env:
            return cls(Path(env).expanduser().absolute())
        return cls(Path(platformdirs.user_data_dir("pm-plugins", appauthor=False)))

    @property
    def plugins_json(self) -> Path:
        return self.root / "plugins.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "plugins.lock"

    @property
    def plugins_dir(self) -> Path:
        return self.root / "plugins"

    def release_dir(self, name: str, version: str) -> Path:
        return self.plugins_dir / name / version

    @property
    def data_dir(self) -> Path:
        """Plugins' own data folders, `data/<name>/` (each plugin sees only its own)."""
        return self.root / "data"

    @property
    def trust_store(self) -> Path:
        return self.root / "trust.json"

    @property
    def host_settings(self) -> Path:
        return self.root / "host.json"

    @property
    def config_values(self) -> Path:
        """`config.json`: the values a person set for options plugins registered."""
        return self.root / "config.json"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "host.sock"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def mutation_lock(self) -> Path:
        """The file lock that serialises installs, upgrades and removals."""
        return self.root / ".lock"

    def ensure(self) -> None:
        """Create the root (0700: it holds the user's trust decisions)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass(frozen=True)
class HostSettings:
    """The host's own settings from `host.json` (all optional)."""

    dev_mode: bool = False
    disabled_modules: tuple[str, ...] = ()
    signature_threshold: int = 1  # distinct trusted keys a plugin manifest needs
    sandbox: str = "required"  # or "best-effort": start a plugin unconfined when it must
    decision_cache_max_ttl: float = DECISION_CACHE_MAX_TTL  # seconds a cached verdict may live


def read_host_settings(path: Path) -> HostSettings:
    """`host.json`: `{"devMode": bool, "disabledModules": [names], "signatureThreshold": n,
    "sandbox": "required" | "best-effort", "decisionCacheMaxTtl": seconds}`; a missing file
    means the defaults."""
    if not path.exists():
        return HostSettings()
    source = str(path)
    try:
        doc = strict_json.load(path, source=source)
        strict_json.expect(doc, dict, where=source, what="the document")
        known = {
            "devMode",
            "disabledModules",
            "signatureThreshold",
            "sandbox",
            "decisionCacheMaxTtl",
        }
        unknown = sorted(set(doc) - known)
        if unknown:
            raise StrictJSONError(f'{source}: unknown field "{unknown[0]}"')
        dev = strict_json.optional(doc, "devMode", bool, False, where=source)
        disabled = strict_json.optional(doc, "disabledModules", list, [], where=source)
        for i, item in enumerate(disabled, 1):
            strict_json.expect(item, str, where=source, what=f'item {i} of "disabledModules"')
        threshold = strict_json.optional(doc, "signatureThreshold", int, 1, where=source)
        if not 1 <= threshold <= 16:
            raise StrictJSONError(f'{source}: field "signatureThreshold" must be from 1 to 16')
        sandbox = strict_json.optional(doc, "sandbox", str, "required", where=source)
        if sandbox not in SANDBOX_MODES:
            raise StrictJSONError(f'{source}: field "sandbox" must be "required" or "best-effort"')
        max_ttl = strict_json.optional(
            doc, "decisionCacheMaxTtl", float, DECISION_CACHE_MAX_TTL, where=source
        )
        if not max_ttl > 0:
            raise StrictJSONError(
                f'{source}: field "decisionCacheMaxTtl" must be a positive number of seconds'
            )
    except StrictJSONError as err:
        raise LoaderError(str(err)) from err
    return HostSettings(
        dev_mode=bool(dev),
        disabled_modules=tuple(disabled),
        signature_threshold=threshold,
        sandbox=str(sandbox),
        decision_cache_max_ttl=float(max_ttl),
    )


def dev_mode_from(flag: bool | None, settings: HostSettings) -> bool:
    """Dev mode is on when `--dev-mode` says so, or `PM_PLUGINS_DEV_MODE=1`, or host.json."""
    if flag:
        return True
    if os.environ.get(DEV_MODE_ENV, "") in ("1", "true", "yes"):
        return True
    return settings.dev_mode
