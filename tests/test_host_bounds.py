# ruff: noqa: F811  (pytest fixtures imported from test_host_services are parameters here)
"""What one hostile plugin can make the host hold, and write into its log, is bounded.

Attacks from the isolation issue, each against the real thing: options registered until the
host grows without end, watches and notifications held open by the dozen, oversized
notifications, and plugin text that tries to forge the host's log lines (newlines, carriage
returns, escape sequences, on stderr, in hclog JSON, and on go-plugin's stdio stream). Each
is refused with RESOURCE_EXHAUSTED and a sentence naming the bound, or escaped, while a
well-behaved plugin beside it keeps working.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from host.runtime import PluginHost, PluginSpec
from host.services.backchannel import HostServices
from host.services.config import (
    MAX_KEYS_PER_WATCH,
    MAX_OPTION_BYTES_PER_PLUGIN,
    MAX_OPTIONS_PER_PLUGIN,
    MAX_WATCHES_PER_PLUGIN,
)
from host.services.notifications import (
    MAX_ACTIONS,
    MAX_EVENT_ID_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_PENDING_PER_PLUGIN,
    MAX_SHOWN_PER_PLUGIN,
)
from pm_plugin.wire.portmaster import config_pb2, network_pb2, notification_pb2
from tests.conftest import FAKE_PLUGIN, wait_for
from tests.test_host_services import (  # noqa: F401  (fixtures)
    DEADLINE,
    Client,
    connect,
    custom,
    notify_request,
    option,
    refusal,
    services,
    sock_dir,
    wait_until,
)

Connect = Callable[[str, bool], Client]


def register(client: Client, key: str, description: str = "") -> None:
    opt = option(key)
    opt.description = description
    client.config.RegisterOption(config_pb2.RegisterRequest(option=opt), timeout=DEADLINE)


def test_option_flood_stops_at_the_bound_and_others_still_register(
    services: HostServices, connect: Connect
) -> None:
    hostile, other = connect("flood", False), connect("hosts", False)
    for i in range(MAX_OPTIONS_PER_PLUGIN):
        register(hostile, f"k{i}")
    error = refusal(lambda: register(hostile, "one-more"))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"already registered {MAX_OPTIONS_PER_PLUGIN} config options" in error.details
    register(hostile, "k0", "re-registering a held key stays possible")
    register(other, "still-fine")
    assert "plugins/hosts/still-fine" in services.config.registered_keys()
    assert "plugins/flood/one-more" not in services.config.registered_keys()


def test_option_bytes_are_bounded(connect: Connect) -> None:
    hostile = connect("flood", False)
    half = "x" * (MAX_OPTION_BYTES_PER_PLUGIN // 2 + 1)
    register(hostile, "big1", half)
    error = refusal(lambda: register(hostile, "big2", half))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "bytes of config option definitions" in error.details


def test_watches_are_bounded_and_free_again_when_closed(
    services: HostServices, connect: Connect
) -> None:
    hostile = connect("flood", False)
    register(hostile, "k")
    request = config_pb2.WatchChangesRequest(keys=["k"])
    streams = [
        hostile.config.WatchValues(request, timeout=30) for _ in range(MAX_WATCHES_PER_PLUGIN)
    ]
    wait_until(lambda: services.config.open_subscriptions == MAX_WATCHES_PER_PLUGIN)
    error = refusal(lambda: next(hostile.config.WatchValues(request, timeout=DEADLINE)))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "open config watches" in error.details
    streams.pop().cancel()
    wait_until(lambda: services.config.open_subscriptions == MAX_WATCHES_PER_PLUGIN - 1)
    streams.append(hostile.config.WatchValues(request, timeout=30))
    wait_until(lambda: services.config.open_subscriptions == MAX_WATCHES_PER_PLUGIN)
    for stream in streams:
        stream.cancel()


def test_pending_notifications_are_bounded_per_plugin(
    services: HostServices, connect: Connect
) -> None:
    hostile, other = connect("flood", False), connect("hosts", False)
    asks = [
        hostile.notify.CreateNotification(notify_request(f"n{i}", custom("ok")), timeout=30)
        for i in range(MAX_PENDING_PER_PLUGIN)
    ]
    wait_until(lambda: len(services.notifications.pending()) == MAX_PENDING_PER_PLUGIN)
    error = refusal(
        lambda: list(hostile.notify.CreateNotification(notify_request("more", custom("ok"))))
    )
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"already has {MAX_PENDING_PER_PLUGIN} notifications waiting" in error.details
    fine = other.notify.CreateNotification(notify_request("fine", custom("ok")), timeout=30)
    wait_until(lambda: any(p.plugin == "hosts" for p in services.notifications.pending()))
    services.notifications.answer("hosts:fine", "ok")
    assert [r.selected_action_id for r in fine] == ["ok"]
    for ask in asks:
        ask.cancel()
    wait_until(lambda: services.notifications.pending() == [])


@pytest.mark.parametrize(
    "notification",
    [
        notification_pb2.Notification(
            event_id="m", title="t", message="m" * (MAX_MESSAGE_CHARS + 1)
        ),
        notification_pb2.Notification(
            event_id="a", title="t", actions=[custom(f"a{i}") for i in range(MAX_ACTIONS + 1)]
        ),
        notification_pb2.Notification(event_id="e" * (MAX_EVENT_ID_CHARS + 1), title="t"),
        notification_pb2.Notification(
            event_id="u",
            title="t",
            actions=[notification_pb2.NotificationAction(id="u", text="u", open_url="x" * 100_000)],
        ),
    ],
    ids=["long-message", "many-actions", "long-event-id", "huge-action-url"],
)
def test_oversized_notifications_are_refused(
    services: HostServices, connect: Connect, notification: notification_pb2.Notification
) -> None:
    hostile = connect("flood", False)
    request = notification_pb2.CreateNotificationRequest(notification=notification)
    error = refusal(lambda: list(hostile.notify.CreateNotification(request, timeout=DEADLINE)))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details.startswith('plugin "flood" sent a notification with ')
    assert services.notifications.pending() == [] and services.notifications.shown() == []


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    h = PluginHost(HostServices(), base_directory=str(tmp_path), handshake_timeout=5.0)
    yield h
    h.stop_all()


def test_plugin_text_cannot_forge_host_log_lines(
    host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host.add(
        PluginSpec(
            name="forger", argv=(sys.executable, str(FAKE_PLUGIN), "forge-log"), types=("decider",)
        )
    )
    assert host.start_all() == {}

    def plugin_records() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("pm_plugins.plugin")]

    assert wait_for(
        lambda: sum("FORGED" in m or "allowlist verified" in m for m in plugin_records()) >= 4
    )
    messages = plugin_records()
    for message in messages:
        assert "\n" not in message and "\r" not in message and "\x1b" not in message, message
        assert "\x07" not in message
    joined = "\n".join(messages)
    assert "real\\nINFO pm_plugins.host: plugin allowlist verified\\x1b[2J" in joined
    assert "plain\\rINFO pm_plugins.host: plugin allowlist verified\\x1b]0;title\\x07" in joined
    assert "logged\\nINFO pm_plugins.host" in joined
    # the stdio chunk's lines are records of their own, the escape shown
    assert any(m.endswith("stdout: stdio") for m in messages)
    assert any(
        "stdout: INFO pm_plugins.host: plugin allowlist verified\\x1b[31m" in m for m in messages
    )


def test_a_plugin_named_like_the_host_owner_is_bounded_like_any_other(connect: Connect) -> None:
    posing = connect("host", False)
    for i in range(MAX_OPTIONS_PER_PLUGIN):
        register(posing, f"k{i}")
    assert refusal(lambda: register(posing, "more")).code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_watch_naming_too_many_keys_is_refused_before_any_work(connect: Connect) -> None:
    hostile = connect("flood", False)
    request = config_pb2.WatchChangesRequest(keys=[f"k{i}" for i in range(MAX_KEYS_PER_WATCH + 1)])
    error = refusal(lambda: next(hostile.config.WatchValues(request, timeout=DEADLINE)))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"more than one watch may name ({MAX_KEYS_PER_WATCH})" in error.details


def test_a_flood_of_shown_notifications_keeps_other_plugins_shown(
    services: HostServices, connect: Connect
) -> None:
    hostile, other = connect("flood", False), connect("hosts", False)
    list(other.notify.CreateNotification(notify_request("important"), timeout=DEADLINE))
    for i in range(200):
        list(hostile.notify.CreateNotification(notify_request(f"n{i}"), timeout=DEADLINE))
    shown = services.notifications.shown()
    assert "hosts:important" in [n.event_id for n in shown]
    assert sum(n.plugin == "flood" for n in shown) == MAX_SHOWN_PER_PLUGIN


def test_error_details_from_a_plugin_cannot_forge_host_log_lines(
    host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    argv = (sys.executable, str(FAKE_PLUGIN), "normal")
    host.add(PluginSpec(name="liar", argv=argv, types=("decider",)))
    assert host.start_all() == {}
    forge = network_pb2.Connection(id="f")
    forge.entity.domain = "forge.test."
    assert host.decide(forge).plugin is None  # an error counts as undecided
    messages = [r.getMessage() for r in caplog.records]
    assert any("oops\\nINFO pm_plugins.host" in m for m in messages)
    for message in messages:
        assert "\n" not in message and "\x1b" not in message, message
