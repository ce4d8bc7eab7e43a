"""`pm-plugins config`: the options plugins registered in the booted host, and the static
config of plugins.json entries, read and set by a person.

Why this exists: a plugin's options were reachable only by the plugin itself. This is the
thin command over the host's `config*` control requests (host.config_admin) and, for static
config and saved values without a running host, over registry_client.plugin_config and
loader.config_values. Values are typed as the option declares; text on the command line
becomes that type here (`true`, `42`, several words for a list, or a JSON list).
"""

from __future__ import annotations

import json
from typing import Any

import click

from cli.common import Context, emit, pass_ctx, refusals
from cli.render import table
from host.control import ControlError, request
from loader.config_values import ConfigValuesError, check_plain, read_values
from loader.plugins_json import read_plugins_json
from registry_client.plugin_config import set_static

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def plain_from_text(texts: tuple[str, ...], type_: str, key: str) -> Any:
    """The plain JSON value that the words `texts` mean for an option of type `type_`."""
    if type_ == "string_array":
        if len(texts) == 1 and texts[0].lstrip().startswith("["):
            return check_plain(_json(texts[0], key), type_, key)
        return list(texts)
    if len(texts) != 1:
        raise ConfigValuesError(f"config option {key} takes one value, not {len(texts)}")
    text = texts[0]
    if type_ == "string":
        return text
    if type_ == "bool":
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ConfigValuesError(f"config option {key} takes true or false, not {text!r}")
    if type_ == "int":
        try:
            return check_plain(int(text, 10), type_, key)
        except ValueError:
            raise ConfigValuesError(
                f"config option {key} takes a whole number, not {text!r}"
            ) from None
    try:
        return check_plain(json.loads(text), "any", key)
    except (ValueError, ConfigValuesError):
        return text  # an untyped option: words that are not JSON are a string


def _json(text: str, key: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise ConfigValuesError(f"the value for {key} is not valid JSON ({err})") from err


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _options_text(options: list[dict[str, Any]]) -> str:
    if not options:
        return "no running plugin registered a config option"
    rows = [
        [o["key"], o["type"], _shown(o["value"]) + ("" if o["set"] else " (default)"),
         o["plugin"], o["description"] or o["name"]]
        for o in options
    ]  # fmt: skip
    return table(["KEY", "TYPE", "VALUE", "PLUGIN", "DESCRIPTION"], rows)


def _offline(ctx: Context, plugin: str | None) -> dict[str, Any]:
    """What is known without a running host: saved values and static config (of `plugin`)."""
    saved = read_values(ctx.home.config_values)
    if plugin:
        saved = {k: v for k, v in saved.items() if k.startswith(f"plugins/{plugin}/")}
    entries = read_plugins_json(ctx.home.plugins_json)
    static = {
        e.name: json.loads(e.config) for e in entries if e.config and plugin in (None, e.name)
    }
    return {
        "running": False,
        "saved": {k: {"type": v.type, "value": v.value} for k, v in sorted(saved.items())},
        "static": static,
    }


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config(click_ctx: click.Context, as_json: bool) -> None:
    """The config options the running plugins registered (same as `config list`)."""
    if click_ctx.invoked_subcommand is None:
        click_ctx.invoke(config_list, as_json=as_json)


@config.command("list")
@click.option("--plugin", help="Only this plugin's options.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_list(ctx: Context, as_json: bool, plugin: str | None = None) -> None:
    """Every option: key, type, value (or its default), plugin, description."""
    with refusals():
        try:
            options = request(ctx.home.control_socket, "config")["options"]
        except ControlError as err:
            if "no host is running" not in str(err):
                raise
            data = _offline(ctx, plugin)
            lines = [f"{k} = {_shown(v['value'])} (saved)" for k, v in data["saved"].items()]
            lines += [f"static {n}: {_shown(c)}" for n, c in data["static"].items()]
            note = "no host is running: options exist while their plugins run; saved values:"
            emit(data, as_json, "\n".join([note, *lines]))
            return
    if plugin:
        options = [o for o in options if o["plugin"] == plugin]
    emit({"running": True, "options": options}, as_json, _options_text(options))


@config.command("get")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_get(ctx: Context, key: str, as_json: bool) -> None:
    """The value of option KEY (a full key, or PLUGIN/KEY)."""
    with refusals():
        option = request(ctx.home.control_socket, "config-get", key=key)
    emit(option, as_json, _shown(option["value"]))


@config.command("set")
@click.argument("key")
@click.argument("values", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the option as JSON.")
@pass_ctx
def config_set(ctx: Context, key: str, values: tuple[str, ...], as_json: bool) -> None:
    """Set option KEY to VALUES, typed as the option declares; the plugin sees it at once
    and the value is kept across restarts. A list takes several words or one JSON list."""
    with refusals():
        option = request(ctx.home.control_socket, "config-get", key=key)
        plain = plain_from_text(values, option["type"], option["key"])
        option = request(ctx.home.control_socket, "config-set", key=option["key"], value=plain)
    emit(option, as_json, f"{option['key']} = {_shown(option['value'])}")


@config.command("reset")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the option as JSON.")
@pass_ctx
def config_reset(ctx: Context, key: str, as_json: bool) -> None:
    """Forget the value set for option KEY: its default applies again."""
    with refusals():
        option = request(ctx.home.control_socket, "config-reset", key=key)
    emit(option, as_json, f"{option['key']} = {_shown(option['value'])} (default)")


@config.command("static")
@click.argument("name")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--unset", is_flag=True, help="Remove KEY from the static config.")
@pass_ctx
def config_static(ctx: Context, name: str, key: str, value: str | None, unset: bool) -> None:
    """Set KEY of plugin NAME's static config (plugins.json "config") to VALUE (JSON, or
    else a string); the plugin reads it when it next starts."""
    if (value is None) == (not unset):
        raise click.UsageError("give a VALUE, or --unset to remove KEY")
    with refusals():
        plain: Any = None
        if value is not None:
            try:
                plain = json.loads(value)
            except ValueError:
                plain = value
        set_static(ctx.home, name, key, plain, unset=unset)
    what = "removed" if unset else f"= {_shown(plain)}"
    click.echo(f"static config of {name}: {key} {what}; it applies when {name} next starts")
