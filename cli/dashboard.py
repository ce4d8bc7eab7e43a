"""`pm-plugins dashboard`: the booted host's local web page (`dashboard/`), started here.

The page shows every module and plugin of the host booted on this state root, its
notifications and plugin options, and searches, installs and removes plugins; it reaches the
host through the owner-only control socket, as `status` and `module` do. The command prints
the page's address (127.0.0.1, a random port unless `--port`, and a token) and serves until
Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import click

from cli.common import Context, emit, pass_ctx
from dashboard.server import DashboardServer


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Port on 127.0.0.1 (default: a free one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the address as JSON.")
@pass_ctx
def dashboard(ctx: Context, port: int, as_json: bool) -> None:
    """A local web page for the booted host: modules and plugins, notifications, plugin
    options, search and install. Prints its address (with a token: give it to no one) and
    serves on 127.0.0.1 until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        server = DashboardServer(ctx.home, port)
    except OSError as err:
        raise click.ClickException(
            f"cannot listen on 127.0.0.1:{port}: {err.strerror or err}"
        ) from err
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    try:
        emit(
            {"url": server.url, "port": server.port},
            as_json,
            f"dashboard: {server.url}\n(open it in your browser; the address holds a token, "
            f"give it to no one; Ctrl-C stops)",
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
        click.echo("dashboard stopped", err=True)
