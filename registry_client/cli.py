"""The `pm-plugins` command line: a thin layer over library calls.

Each command parses its arguments, calls the library and formats the answer (a table, or
JSON with `--json`). Every refusal of ours (`KeysError`, `LoaderError`, `InstallError`,
`PackageError`) becomes one sentence on stderr and exit code 1, in one place (`_refusals`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click
from packaging.version import InvalidVersion, Version

from keys import ed25519
from keys.errors import KeyFileError, KeysError
from keys.store import LEVELS, TrustStore
from loader.boot import plan_boot
from loader.control import ControlServer, request
from loader.errors import LoaderError
from loader.home import Home, dev_mode_from, read_host_settings
from loader.journal import reading, roll_forward, state_lock
from loader.lockfile import read_lock
from loader.plugins_json import read_plugins_json
from loader.reference_host import CORE_MODULES, OFF_BY_DEFAULT, ReferenceHost
from loader.runtime import HOST_VERSION
from registry_client import registries
from registry_client.default_index import ensure_default_registry
from registry_client.index_commands import index as index_group
from registry_client.installer import (
    InstallError,
    InstallResult,
    install_many,
    read_package,
    uninstall,
)
from registry_client.package import PackageError, build_package
from registry_client.registry_install import (
    BarFactory,
    choose,
    install_from_index,
    open_clients,
)
from registry_client.render import table
from registry_client.resolve import ResolutionError
from registry_client.tuf_client import RegistryClient, RegistryError, Release


@dataclass
class Context:
    home: Home
    dev_mode_flag: bool

    def dev_mode(self) -> bool:
        return dev_mode_from(self.dev_mode_flag, read_host_settings(self.home.host_settings))

    def trust(self) -> TrustStore:
        return TrustStore.load(self.home.trust_store)

    def threshold(self) -> int:
        """How many distinct trusted keys must sign a manifest (host.json)."""
        return read_host_settings(self.home.host_settings).signature_threshold


pass_ctx = click.make_pass_decorator(Context)
T = TypeVar("T")


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Our errors become one sentence and exit 1; nothing else is swallowed."""
    try:
        yield
    except (
        KeysError,
        LoaderError,
        InstallError,
        PackageError,
        RegistryError,
        ResolutionError,
    ) as err:
        raise click.ClickException(str(err)) from err
    except OSError as err:  # the disk, not us: say which file and what the system said
        where = f"{err.filename}: " if err.filename else ""
        raise click.ClickException(f"{where}{err.strerror or err}") from err


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


@click.group()
@click.version_option(package_name="pm-plugins")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="State root (default: $PM_PLUGINS_HOME, else the platform's data directory).",
)
@click.option(
    "--dev-mode",
    is_flag=True,
    help="Run unsigned plugins (with a warning). Also PM_PLUGINS_DEV_MODE=1.",
)
@click.pass_context
def cli(ctx: click.Context, home: Path | None, dev_mode: bool) -> None:
    """Signed plugins for a Portmaster-like host: install, verify, boot."""
    ctx.obj = Context(Home.locate(home), dev_mode)
    # finish a change a crash interrupted; `boot` does it itself and boots the host's own
    # modules even when it cannot
    if ctx.obj.home.root.exists() and ctx.invoked_subcommand != "boot":
        with _refusals():
            roll_forward(ctx.obj.home)


# -- keys -----------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Publisher keys and the trust store."""


def _passphrase(confirm: bool) -> bytes:
    from_env = ed25519.passphrase_from_env()
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"a passphrase is needed: set {ed25519.PASSPHRASE_ENV} or run in a terminal"
        )
    text: str = click.prompt(
        "Key passphrase", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return text.encode()


@keys.command("generate")
@click.argument("name")
@pass_ctx
def keys_generate(ctx: Context, name: str) -> None:
    """Make a new signing key NAME (encrypted with a passphrase) in the state root."""
    with _refusals():
        if not name.replace("-", "").replace("_", "").isalnum():
            raise click.ClickException(f"{name!r} is not a key name (letters, digits, - and _)")
        ctx.home.ensure()
        ctx.home.keys_dir.mkdir(mode=0o700, exist_ok=True)
        key = ed25519.generate()
        path = ctx.home.keys_dir / f"{name}.key"
        ed25519.save_private_key(path, key, _passphrase(confirm=True))
        public = ed25519.public_key_to_text(key.public_key())
        (ctx.home.keys_dir / f"{name}.pub").write_text(public + "\n")
    click.echo(f"key {name}: {path}")
    click.echo(f"key id {ed25519.key_id(key)}")
    click.echo(f"public key {public}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def keys_list(ctx: Context, as_json: bool) -> None:
    """Trusted publisher keys, revoked key ids, and your own keys."""
    with _refusals():
        store = ctx.trust()
    own = sorted(p.stem for p in ctx.home.keys_dir.glob("*.key"))
    data: dict[str, Any] = {
        "trusted": [
            {"key_id": k.key_id, "level": k.level, "label": k.label} for k in store.keys.values()
        ],
        "revoked": sorted(store.revoked),
        "own": own,
    }
    rows = [[k["key_id"], k["level"], k["label"]] for k in data["trusted"]]
    rows += [[kid, "REVOKED", ""] for kid in data["revoked"]]
    text = table(["KEY ID", "LEVEL", "LABEL"], rows) if rows else "no trusted keys"
    if own:
        text += "\nyour keys: " + ", ".join(own)
    _emit(data, as_json, text)


def _public_key_arg(value: str) -> Any:
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_bytes()[:4096].decode("ascii")
        except UnicodeDecodeError as err:
            raise KeyFileError(f"{path}: is not a base64 public key") from err
        return ed25519.public_key_from_text(text.strip(), source=str(path))
    return ed25519.public_key_from_text(value.strip(), source="the public key given")


def _change_trust(ctx: Context, change: Callable[[TrustStore], T]) -> T:
    """Load the trust store, apply `change`, save it atomically, under the state root's
    lock (two trust changes at once never lose one)."""
    with _refusals(), state_lock(ctx.home):
        store = ctx.trust()
        result = change(store)
        store.save(ctx.home.trust_store)
    return result


@keys.command("trust")
@click.argument("public_key")
@click.option("--level", type=click.Choice(LEVELS), default="community", show_default=True)
@click.option("--label", default="", help="Who this key belongs to.")
@pass_ctx
def keys_trust(ctx: Context, public_key: str, level: str, label: str) -> None:
    """Trust a publisher's PUBLIC_KEY (base64 text, or a file holding it)."""
    entry = _change_trust(ctx, lambda store: store.trust(_public_key_arg(public_key), level, label))
    click.echo(f"trusted key {entry.key_id} ({level}{', ' + label if label else ''})")


@keys.command("untrust")
@click.argument("key_id")
@pass_ctx
def keys_untrust(ctx: Context, key_id: str) -> None:
    """Stop trusting KEY_ID (it can be trusted again later)."""
    _change_trust(ctx, lambda store: store.untrust(key_id))
    click.echo(f"key {key_id} is no longer trusted")


@keys.command("revoke")
@click.argument("key_id")
@pass_ctx
def keys_revoke(ctx: Context, key_id: str) -> None:
    """Revoke KEY_ID for good: nothing it signed runs or installs again."""
    _change_trust(ctx, lambda store: store.revoke(key_id))
    click.echo(f"key {key_id} is revoked")


@keys.command("export")
@click.argument("name")
@pass_ctx
def keys_export(ctx: Context, name: str) -> None:
    """Print the public key of your key NAME (to give to users who trust you)."""
    path = ctx.home.keys_dir / f"{name}.pub"
    if not path.is_file():
        raise click.ClickException(f"you have no key named {name} (no {path})")
    click.echo(path.read_text().strip())


# -- packages and installs ------------------------------------------------------------------


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_paths",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="A key file or the name of one of your keys; repeat it for more signatures.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"))
@pass_ctx
def package(ctx: Context, directory: Path, key_paths: tuple[Path, ...], out: Path) -> None:
    """Sign the plugin in DIRECTORY (plugin.toml + executable) into a package under --out.

    --key is a key file, or the name of one of your keys (`keys generate`).
    """
    with _refusals():
        passphrase = _passphrase(confirm=False)
        keys = []
        for key_path in key_paths:
            if not key_path.exists() and (ctx.home.keys_dir / f"{key_path}.key").exists():
                key_path = ctx.home.keys_dir / f"{key_path}.key"
            keys.append(ed25519.load_private_key(key_path, passphrase))
        made = build_package(directory, keys, out)
    signed_by = ", ".join(f"{ed25519.key_id(k)[:12]}..." for k in keys)
    click.echo(f"packaged {made} (signed by key {signed_by})")


def _progress(line: str) -> None:
    click.echo(line, err=True)


@contextlib.contextmanager
def _bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A download progress bar on stderr (used only when stderr is a terminal)."""
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _download_bar() -> BarFactory | None:
    return _bar if sys.stderr.isatty() else None


def _clients(ctx: Context) -> list[RegistryClient]:
    """The configured registries, refreshed; the embedded default one on first use."""
    ensure_default_registry(ctx.home, _progress)
    return open_clients(ctx.home, _progress)


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--pre", is_flag=True, help="Consider pre-releases.")
@pass_ctx
def install(ctx: Context, targets: tuple[str, ...], pre: bool) -> None:
    """Install plugins: NAME[SPEC] from the registry (e.g. hosts, "hosts>=1,<2"), or
    ./PATH of a package directory (in dev mode also a plugin source directory)."""
    paths = [t for t in targets if "/" in t or t.startswith(".")]  # ./hosts, not hosts
    if paths and len(paths) != len(targets):
        raise click.ClickException("install either names from the registry or paths, not both")
    with _refusals():
        if paths:
            releases = [
                read_package(
                    Path(t), trust=ctx.trust(), dev_mode=ctx.dev_mode(), threshold=ctx.threshold()
                )
                for t in paths
            ]
            results = install_many(ctx.home, releases)
        else:
            clients = _clients(ctx)
            chosen = choose(ctx.home, targets, clients, trust=ctx.trust(), pre=pre)
            if not chosen:
                click.echo("nothing to do: the requested plugins are installed")
                return
            results = install_from_index(
                ctx.home,
                chosen,
                clients,
                trust=ctx.trust(),
                progress=_progress,
                bar=_download_bar(),
                threshold=ctx.threshold(),
            )
    _report_installs(results)


def _report_installs(results: list[InstallResult]) -> None:
    for result in results:
        how = (
            f"signed by {result.key_id[:12]}... ({result.trust_level})"
            if result.key_id
            else "UNSIGNED (dev mode)"
        )
        verb = "already installed" if result.unchanged else "installed"
        if result.replaced:
            verb = f"upgraded from {result.replaced}"
        click.echo(f"{result.name} {result.version}: {verb}, {how}")
        for name in result.missing:
            click.echo(f"  note: {result.name} needs plugin {name}, which is not installed")


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--pre", is_flag=True, help="Consider pre-releases.")
@pass_ctx
def upgrade(ctx: Context, names: tuple[str, ...], pre: bool) -> None:
    """Upgrade NAMEs (default: every installed plugin) to their newest fitting releases."""
    with _refusals():
        installed = read_lock(ctx.home.lock_file)
        unknown = [n for n in names if n not in installed]
        if unknown:
            raise click.ClickException(f"plugin {unknown[0]} is not installed")
        wanted = list(names) or sorted(installed)
        if not wanted:
            click.echo("no plugins installed")
            return
        clients = _clients(ctx)
        if not names:  # every installed plugin that some registry has
            local = [n for n in wanted if not any(c.find(n) for c in clients)]
            for name in local:
                _progress(f"skipping {name}: it is in no configured registry")
            wanted = [n for n in wanted if n not in local]
        chosen = choose(ctx.home, wanted, clients, trust=ctx.trust(), pre=pre, upgrade=True)
        if not chosen:
            click.echo("everything is up to date")
            return
        results = install_from_index(
            ctx.home,
            chosen,
            clients,
            trust=ctx.trust(),
            progress=_progress,
            bar=_download_bar(),
            threshold=ctx.threshold(),
        )
    _report_installs(results)


@cli.command()
@pass_ctx
def update(ctx: Context) -> None:
    """Refresh the TUF metadata of every registry."""
    with _refusals():
        _clients(ctx)


@cli.command()
@click.argument("text", default="")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def search(ctx: Context, text: str, as_json: bool) -> None:
    """Plugins in the index whose name or description contains TEXT."""
    with _refusals():
        found = []
        for client in _clients(ctx):
            for release in client.releases():
                haystack = f"{release.name} {release.description}".lower()
                if text.lower() in haystack:
                    found.append((client.name, release))
    newest: dict[str, tuple[str, Release]] = {}
    for registry, release in found:
        seen = newest.get(release.name)
        if seen is None or _version(release.version) > _version(seen[1].version):
            newest[release.name] = (registry, release)
    data: list[dict[str, Any]] = [
        {
            "name": r.name,
            "version": r.version,
            "types": list(r.types),
            "description": r.description,
            "registry": reg,
        }
        for reg, r in sorted(newest.values(), key=lambda x: x[1].name)
    ]
    rows = [[d["name"], d["version"], ",".join(d["types"]), d["description"]] for d in data]
    _emit(
        data,
        as_json,
        table(["NAME", "VERSION", "TYPES", "DESCRIPTION"], rows) if rows else "no plugin found",
    )


def _version(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def info(ctx: Context, name: str, as_json: bool) -> None:
    """Everything the index says about plugin NAME (every release)."""
    with _refusals():
        releases = []
        for client in _clients(ctx):
            releases = [(client.name, r) for r in client.find(name)]
            if releases:
                break
        if not releases:
            raise click.ClickException(f"no plugin named {name} is in any configured registry")
    data: list[dict[str, Any]] = [
        {
            "name": r.name,
            "version": r.version,
            "platform": r.platform,
            "types": list(r.types),
            "requires": r.requires,
            "description": r.description,
            "publisher": r.publisher,
            "publisher_key_id": r.publisher_key_id,
            "size": r.artifact.length,
            "sha256": r.artifact.sha256,
            "registry": reg,
        }
        for reg, r in sorted(releases, key=lambda x: _version(x[1].version), reverse=True)
    ]
    newest = data[0]
    lines = [
        f"{newest['name']}: {newest['description']}",
        f"publisher: {newest['publisher']} (key {newest['publisher_key_id'][:12]}...)",
        f"types: {', '.join(newest['types'])}",
        f"requires: host {', '.join(newest['requires']['host']) or '-'}; plugins "
        + (", ".join(f"{k}{v}" for k, v in newest["requires"]["plugins"].items()) or "-"),
        "releases: " + ", ".join(f"{d['version']} ({d['platform']})" for d in data),
    ]
    _emit(data, as_json, "\n".join(lines))


@cli.group()
def registry() -> None:
    """The registries plugins are installed from."""


@registry.command("add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--root",
    "root",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The registry's root.json, obtained out of band: the trust anchor.",
)
@pass_ctx
def registry_add(ctx: Context, name: str, url: str, root: Path) -> None:
    """Trust registry NAME at URL (http(s)://, file:// or a folder) from its ROOT."""
    with _refusals():
        registries.add_registry(ctx.home, name, url, root)
    click.echo(f"registry {name} added: {url}")


@registry.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def registry_list(ctx: Context, as_json: bool) -> None:
    with _refusals():
        configured = registries.read_registries(ctx.home)
    data = [{"name": r.name, "url": r.url} for r in configured]
    rows = [[r.name, r.url] for r in configured]
    _emit(data, as_json, table(["NAME", "URL"], rows) if rows else "no registries configured")


@registry.command("remove")
@click.argument("name")
@pass_ctx
def registry_remove(ctx: Context, name: str) -> None:
    with _refusals():
        registries.remove_registry(ctx.home, name)
    click.echo(f"registry {name} removed")


@cli.command("uninstall")
@click.argument("name")
@click.option("--force", is_flag=True, help="Remove even if other plugins need it.")
@pass_ctx
def uninstall_cmd(ctx: Context, name: str, force: bool) -> None:
    """Remove plugin NAME (refused while another installed plugin needs it)."""
    with _refusals():
        version = uninstall(ctx.home, name, trust=ctx.trust(), force=force)
    click.echo(f"uninstalled {name} {version}")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """Installed plugins: what plugins.json configures and what the lock records."""
    with _refusals():
        entries = read_plugins_json(ctx.home.plugins_json)
        locked = read_lock(ctx.home.lock_file)
    data: list[dict[str, Any]] = [
        {
            "name": e.name,
            "version": e.version or (locked[e.name].version if e.name in locked else None),
            "types": list(e.types),
            "enabled": e.enabled,
            "privileged": e.privileged,
            "signer": locked[e.name].signer if e.name in locked else None,
        }
        for e in entries
    ]
    rows = [
        [
            d["name"],
            d["version"] or "-",
            ",".join(d["types"]),
            "yes" if d["enabled"] else "no",
            (d["signer"] or "unsigned")[:12],
        ]
        for d in data
    ]
    _emit(
        data,
        as_json,
        table(["NAME", "VERSION", "TYPES", "ENABLED", "SIGNER"], rows)
        if rows
        else "no plugins installed",
    )


# -- verify, boot, status, query ------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def verify(ctx: Context, as_json: bool) -> None:
    """Run the loader's checks without booting: one row per configured plugin."""
    with _refusals(), reading(ctx.home):  # no install commits while the checks read
        dev_mode = ctx.dev_mode()
        plan = plan_boot(
            ctx.home,
            trust=ctx.trust(),
            dev_mode=dev_mode,
            threshold=ctx.threshold(),
            core_modules=dict.fromkeys(CORE_MODULES, HOST_VERSION),
            locked_versions={n: e.version for n, e in read_lock(ctx.home.lock_file).items()},
        )
    data = {
        "dev_mode": dev_mode,
        "error": plan.error,
        "plugins": [
            {
                "name": r.name,
                "version": r.version,
                "status": r.status.value,
                "runs": r.runs,
                "key_id": r.key_id,
                "trust_level": r.trust_level,
                "reason": r.reason,
            }
            for r in plan.plugins
        ],
    }
    rows = [[r.name, r.version or "-", r.status.value, r.reason] for r in plan.plugins]
    text = table(["NAME", "VERSION", "STATUS", "REASON"], rows) if rows else "no plugins configured"
    if plan.error:
        text = f"plugins.json refused: {plan.error}"
    _emit(data, as_json, text)
    if not plan.ok:
        sys.exit(1)


@cli.command()
@click.option("--enable", "enable", multiple=True, help="Start a module that is off by default.")
@pass_ctx
def boot(ctx: Context, enable: tuple[str, ...]) -> None:
    """Boot the reference host (core modules + verified plugins) and serve until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with _refusals():
        settings = read_host_settings(ctx.home.host_settings)
        dev_mode = dev_mode_from(ctx.dev_mode_flag, settings)
        if dev_mode:
            click.secho(
                "WARNING: dev mode is on: unsigned plugins will run", fg="red", bold=True, err=True
            )
        off = tuple(m for m in (*OFF_BY_DEFAULT, *settings.disabled_modules) if m not in enable)
        ctx.home.ensure()
        host = ReferenceHost(
            ctx.home, dev_mode=dev_mode, disabled=off, threshold=settings.signature_threshold
        )
        server = ControlServer(ctx.home.control_socket, lambda req: _handle(host, req))
        server.start()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        host.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        host.boot()
        click.echo(_status_text(host.status()))
        click.echo(f"host is up; control socket {ctx.home.control_socket}", err=True)
        sys.stdout.flush()
        while not host.wait(0.5):
            pass
    finally:
        server.close()
        host.shutdown()
        click.echo("host stopped", err=True)


def _handle(host: ReferenceHost, req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "status":
        return host.status()
    if op == "dns":
        return host.resolve(str(req["name"]), str(req.get("type", "A")))
    if op == "connection":
        return host.decide(
            binary=str(req["binary"]),
            domain=str(req.get("domain", "")),
            ip=str(req.get("ip", "")),
            port=int(req.get("port", 0)),
            protocol=int(req.get("protocol", 6)),
            inbound=bool(req.get("inbound", False)),
        )
    if op == "disable":
        return {"stopped": host.disable(str(req["module"]))}
    if op == "enable":
        host.enable(str(req["module"]))
        return {}
    if op == "stop":
        host.request_stop()
        return {}
    raise ValueError(f"unknown request {op!r}")


def _status_text(status: dict[str, Any]) -> str:
    rows = [
        [
            m["name"],
            m["kind"],
            m["state"],
            m.get("version") or "-",
            m.get("signer") or "-",
            str(m["pid"] or "-"),
            str(m["restarts"]),
            m["reason"],
        ]
        for m in status["modules"]
    ]
    head = ["MODULE", "KIND", "STATE", "VERSION", "SIGNER", "PID", "RESTARTS", "REASON"]
    text = table(head, rows)
    if status.get("dev_mode"):
        text = "DEV MODE: unsigned plugins run\n" + text
    if status.get("plugins_json_error"):
        text += f"\nplugins.json refused: {status['plugins_json_error']}"
    return text


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Modules and plugins of the booted host."""
    with _refusals():
        result = request(ctx.home.control_socket, "status")
    _emit(result, as_json, _status_text(result))


@cli.group()
def query() -> None:
    """Ask the booted host to resolve a name or decide a connection."""


@query.command("dns")
@click.argument("name")
@click.option("--type", "qtype", default="A", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def query_dns(ctx: Context, name: str, qtype: str, as_json: bool) -> None:
    """Resolve NAME through the resolver plugins, then the system resolver."""
    with _refusals():
        result = request(ctx.home.control_socket, "dns", name=name, type=qtype)
    records = result["records"]
    lines = [f"{r['name']} {r['ttl']} {result['type']} {r['data']}" for r in records]
    if not records:
        lines = [f"{result['name']}: no records (rcode {result['rcode']})"]
    lines.append(f";; answered by {result['answered_by']}")
    _emit(result, as_json, "\n".join(lines))


@query.command("connection")
@click.option("--binary", required=True, help="The program's path.")
@click.option("--domain", default="")
@click.option("--ip", default="")
@click.option("--port", default=0, type=int)
@click.option("--protocol", type=click.Choice(["tcp", "udp"]), default="tcp")
@click.option("--inbound", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def query_connection(
    ctx: Context,
    binary: str,
    domain: str,
    ip: str,
    port: int,
    protocol: str,
    inbound: bool,
    as_json: bool,
) -> None:
    """Decide a connection through the decider plugins."""
    with _refusals():
        result = request(
            ctx.home.control_socket,
            "connection",
            binary=binary,
            domain=domain,
            ip=ip,
            port=port,
            protocol=6 if protocol == "tcp" else 17,
            inbound=inbound,
        )
    by = f" (by {result['by']})" if result["by"] else ""
    _emit(result, as_json, f"{result['verdict']}{by}: {result['reason']}")


@cli.group()
def module() -> None:
    """Turn modules of the booted host off and on (dependents follow)."""


@module.command("disable")
@click.argument("name")
@pass_ctx
def module_disable(ctx: Context, name: str) -> None:
    with _refusals():
        result = request(ctx.home.control_socket, "disable", module=name)
    stopped = result["stopped"]
    click.echo(f"{name} disabled" + (f"; stopped {', '.join(stopped)}" if stopped else ""))


@module.command("enable")
@click.argument("name")
@pass_ctx
def module_enable(ctx: Context, name: str) -> None:
    with _refusals():
        request(ctx.home.control_socket, "enable", module=name)
    click.echo(f"{name} enabled")


@cli.command()
@pass_ctx
def stop(ctx: Context) -> None:
    """Stop the booted host."""
    with _refusals():
        request(ctx.home.control_socket, "stop")
    click.echo("host is stopping")


cli.add_command(index_group)


def main() -> None:
    cli()
