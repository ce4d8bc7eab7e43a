"""`pm-plugins verify | boot | status | query | module | stop`: the loader's checks and
the reference host, booted here and asked from another shell over its control socket."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any

import click

from cli.common import Context, emit, pass_ctx, refusals
from cli.render import sandboxes, table
from host import control_requests
from host.control import ControlServer, request
from host.reference_host import ReferenceHost
from loader.home import dev_mode_from, read_host_settings
from loader.host_modules import OFF_BY_DEFAULT, plan_for_host
from loader.journal import reading
from registry_client.registrar import Registrar

# -- verify, boot, status, query ------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def verify(ctx: Context, as_json: bool) -> None:
    """Run the loader's checks without booting: one row per configured plugin."""
    with refusals(), reading(ctx.home):  # no install commits while the checks read
        dev_mode = ctx.dev_mode()
        plan = plan_for_host(
            ctx.home,
            trust=ctx.trust(),
            dev_mode=dev_mode,
            threshold=ctx.threshold(),
        )
    data: dict[str, Any] = {
        "dev_mode": dev_mode,
        "error": plan.error,
        "plugins": [
            {
                "name": r.name,
                "version": r.version,
                "status": r.status.value,
                "runs": r.runs,
                "key_id": r.key_id,
                "key_ids": list(r.key_ids),
                "trust_level": r.trust_level,
                "reason": r.reason,
            }
            for r in plan.plugins
        ],
    }
    rows = [[r.name, r.version or "-", r.status.value, r.reason] for r in plan.plugins]
    text = table(["NAME", "VERSION", "STATUS", "REASON"], rows) if rows else "no plugins configured"
    if plan.error:
        text = f"no plugin can run: {plan.error}"
    data["warnings"] = plan.warnings
    text = "\n".join([*(f"warning: {w}" for w in plan.warnings), text])
    emit(data, as_json, text)
    if not plan.ok:
        sys.exit(1)


@click.command()
@click.option("--enable", "enable", multiple=True, help="Start a module that is off by default.")
@pass_ctx
def boot(ctx: Context, enable: tuple[str, ...]) -> None:
    """Boot the reference host (core modules + verified plugins) and serve until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with refusals():
        settings = read_host_settings(ctx.home.host_settings)
        dev_mode = dev_mode_from(ctx.dev_mode_flag, settings)
        if dev_mode:
            click.secho(
                "WARNING: dev mode is on: unsigned plugins will run", fg="red", bold=True, err=True
            )
        off = tuple(m for m in (*OFF_BY_DEFAULT, *settings.disabled_modules) if m not in enable)
        ctx.home.ensure()
        threshold = settings.signature_threshold
        host = ReferenceHost(
            ctx.home,
            dev_mode=dev_mode,
            disabled=off,
            threshold=threshold,
            # RegisterPlugin: what `install ./PKG` checks, with nobody at a terminal to ask
            installer=Registrar(ctx.home, dev_mode=dev_mode, threshold=threshold),
        )
        server = ControlServer(
            ctx.home.control_socket,
            lambda req: control_requests.answer(host, req),
            plugin_of=host.plugins.plugin_of,
        )
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
        text += f"\nno plugin can run: {status['plugins_json_error']}"
    registered = [
        f"{m['name']} was registered by plugin {m['registered_by']}"
        for m in status["modules"]
        if m.get("registered_by")
    ]
    if registered:
        text += "\n\n" + "\n".join(registered)
    loud, quiet = sandboxes(status["modules"])
    if quiet:
        text += "\n\n" + "\n".join(quiet)
    return "\n".join([*loud, text])


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Modules and plugins of the booted host."""
    with refusals():
        result = request(ctx.home.control_socket, "status")
    emit(result, as_json, _status_text(result))


@click.group()
def query() -> None:
    """Ask the booted host to resolve a name or decide a connection."""


@query.command("dns")
@click.argument("name")
@click.option("--type", "qtype", default="A", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def query_dns(ctx: Context, name: str, qtype: str, as_json: bool) -> None:
    """Resolve NAME through the resolver plugins, then the system resolver."""
    with refusals():
        result = request(ctx.home.control_socket, "dns", name=name, type=qtype)
    records = result["records"]
    lines = [f"{r['name']} {r['ttl']} {result['type']} {r['data']}" for r in records]
    if not records:
        lines = [f"{result['name']}: no records (rcode {result['rcode']})"]
    lines.append(f";; answered by {result['answered_by']}")
    emit(result, as_json, "\n".join(lines))


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
    with refusals():
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
    failed = [f"decider {f['plugin']} failed: {f['error']}" for f in result.get("failed", [])]
    emit(result, as_json, "\n".join([f"{result['verdict']}{by}: {result['reason']}", *failed]))


@query.command("hook")
@click.argument("hook_point")
@click.option("--entity", "entity_id", required=True, help="The entity's id.")
@click.option("--meta", "untyped_meta", multiple=True, help="Untyped metadata, key:value.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def query_hook(
    ctx: Context, hook_point: str, entity_id: str, untyped_meta: tuple[str, ...], as_json: bool
) -> None:
    """Run the auth module's HOOK_POINT (e.g. PreAuthCheck) on an entity."""
    with refusals():
        result = request(
            ctx.home.control_socket,
            "hook",
            hook_point=hook_point,
            entity=entity_id,
            untyped_meta=list(untyped_meta),
        )
    if result["aborted"]:
        text = f"aborted: {result['aborted']}"
    else:
        entity = result["entity"]
        state = "locked" if entity["locked"] else "not locked"
        meta = f"; meta {', '.join(entity['untyped_meta'])}" if entity["untyped_meta"] else ""
        text = f"{entity['id']}: {state}{meta}"
    emit(result, as_json, text)


@click.group()
def module() -> None:
    """Turn modules of the booted host off and on (dependents follow)."""


@module.command("disable")
@click.argument("name")
@pass_ctx
def module_disable(ctx: Context, name: str) -> None:
    """Turn module NAME off; what needs it stops first."""
    with refusals():
        result = request(ctx.home.control_socket, "disable", module=name)
    stopped = result["stopped"]
    click.echo(f"{name} disabled" + (f"; stopped {', '.join(stopped)}" if stopped else ""))


@module.command("enable")
@click.argument("name")
@pass_ctx
def module_enable(ctx: Context, name: str) -> None:
    """Turn module NAME on again; what it stopped comes back."""
    with refusals():
        request(ctx.home.control_socket, "enable", module=name)
    click.echo(f"{name} enabled")


@click.command()
@pass_ctx
def stop(ctx: Context) -> None:
    """Stop the booted host."""
    with refusals():
        request(ctx.home.control_socket, "stop")
    click.echo("host is stopping")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def notifications(click_ctx: click.Context, as_json: bool) -> None:
    """The plugins' notifications in the booted host: the ones waiting for an answer, then
    the shown ones."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.find_object(Context)
    assert ctx is not None
    with refusals():
        result = request(ctx.home.control_socket, "notifications")
    lines = []
    for kind, label in (("waiting", "waiting for an answer"), ("shown", "shown")):
        for n in result[kind]:
            acts = ", ".join(f"{a['id']} ({a['text']})" for a in n["actions"]) or "-"
            lines.append(
                f"{n['event_id']}  [{label}] {n['title']}: {n['message']}  actions: {acts}"
            )
    emit(result, as_json, "\n".join(lines) or "no notifications")


@notifications.command("answer")
@click.argument("event_id")
@click.argument("action")
@pass_ctx
def notifications_answer(ctx: Context, event_id: str, action: str) -> None:
    """Answer notification EVENT_ID with ACTION: the plugin's notify() returns it."""
    with refusals():
        request(ctx.home.control_socket, "answer", event_id=event_id, action=action)
    click.echo(f"answered {event_id} with {action}")


@notifications.command("dismiss")
@click.argument("event_id")
@pass_ctx
def notifications_dismiss(ctx: Context, event_id: str) -> None:
    """Dismiss the shown notification EVENT_ID (one that waits for no answer)."""
    with refusals():
        request(ctx.home.control_socket, "dismiss", event_id=event_id)
    click.echo(f"dismissed {event_id}")
