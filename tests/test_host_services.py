"""Host services over a real backchannel: a grpc server on a unix socket, real client stubs.

Covers config scoping (prefixing, refusals that name the key, privileged reach), identity taken
from the server rather than the request, watch semantics, notifications answered by the host's
caller, and the plugin manager for privileged and unprivileged plugins.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from host.services.backchannel import HostServices
from host.services.common import HOST_OWNER, MAX_MESSAGE_BYTES
from host.services.config import ConfigStore
from host.services.notifications import (
    ActionChoice,
    NotificationCenter,
    PendingNotification,
    UnknownNotificationError,
)
from loader.errors import LoaderError
from pm_plugin.wire.portmaster import (
    config_pb2,
    config_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
    plugins_pb2,
    plugins_pb2_grpc,
)

DEADLINE = 5.0


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def option(key: str, default: config_pb2.Value | None = None) -> config_pb2.Option:
    return config_pb2.Option(
        name=key,
        key=key,
        default=default or config_pb2.Value(),
        option_type=config_pb2.OPTION_TYPE_STRING,
    )


def custom(action_id: str, text: str = "") -> notification_pb2.NotificationAction:
    return notification_pb2.NotificationAction(id=action_id, text=text or action_id)


def open_url(action_id: str, url: str) -> notification_pb2.NotificationAction:
    return notification_pb2.NotificationAction(id=action_id, text=action_id, open_url=url)


def notify_request(
    event_id: str, *actions: notification_pb2.NotificationAction
) -> notification_pb2.CreateNotificationRequest:
    return notification_pb2.CreateNotificationRequest(
        notification=notification_pb2.Notification(
            event_id=event_id, title="T " + event_id, message="M " + event_id, actions=actions
        )
    )


class Backend:
    """A small in-memory plugin loader behind the plugin manager service."""

    def __init__(self) -> None:
        self.running: set[str] = {"hosts"}
        self.calls: list[tuple[str, str]] = []

    def list_plugins(self) -> list[plugins_pb2.Plugin]:
        return [
            plugins_pb2.Plugin(
                config=plugins_pb2.PluginConfig(
                    name=name,
                    # the PR's host pads the list with leading UNKNOWN (0) entries
                    plugin_types=[
                        plugins_pb2.PLUGIN_TYPE_UNKNOWN,
                        plugins_pb2.PLUGIN_TYPE_RESOLVER,
                    ],
                )
            )
            for name in ("allowlist", "hosts")
        ]

    def start_plugin(self, name: str) -> None:
        self.calls.append(("start", name))
        if name not in {"allowlist", "hosts"}:
            raise LookupError(f'no plugin "{name}" is configured')
        if name in self.running:
            raise RuntimeError(f'plugin "{name}" is already running')
        self.running.add(name)

    def stop_plugin(self, name: str) -> None:
        self.calls.append(("stop", name))
        if name not in {"allowlist", "hosts"}:
            raise KeyError(f'no plugin "{name}" is configured')
        self.running.discard(name)


@dataclass
class Client:
    config: config_pb2_grpc.ConfigServiceStub
    notify: notification_pb2_grpc.NotificationServiceStub
    manager: plugins_pb2_grpc.PluginManagerServiceStub


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    # sun_path holds 107 bytes; pytest's tmp_path can be longer than that leaves room for.
    if len(str(tmp_path)) <= 80:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="pmhs-"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def services() -> HostServices:
    services = HostServices(plugin_manager=Backend())
    services.config.register_option("core/dns", option("core/dns"), HOST_OWNER)
    services.config.set("core/dns", config_pb2.Value(string="9.9.9.9"))
    services.config.register_option(
        "plugins/other/secret",
        option("secret", config_pb2.Value(string="other's secret")),
        "other",
    )
    return services


def backchannel_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("backchannel-")]


@pytest.fixture
def connect(services: HostServices, sock_dir: Path) -> Iterator[Callable[[str, bool], Client]]:
    servers: list[grpc.Server] = []
    channels: list[grpc.Channel] = []

    def open_client(plugin_name: str, privileged: bool) -> Client:
        path = str(sock_dir / f"{plugin_name}-{len(servers)}.sock")
        servers.append(services.serve_backchannel(plugin_name, privileged, path))
        channel = grpc.insecure_channel(f"unix:{path}")
        channels.append(channel)
        return Client(
            config_pb2_grpc.ConfigServiceStub(channel),
            notification_pb2_grpc.NotificationServiceStub(channel),
            plugins_pb2_grpc.PluginManagerServiceStub(channel),
        )

    yield open_client
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop(None).wait(DEADLINE)
    wait_until(lambda: not backchannel_threads())
    assert services.config.open_subscriptions == 0
    assert services.notifications.pending() == []


class Refusal:
    """The status of a failed call."""

    def __init__(self, error: grpc.RpcError) -> None:
        assert isinstance(error, grpc.Call)
        self.code: grpc.StatusCode = error.code()
        self.details: str = error.details() or ""


def refusal(call: Callable[[], object]) -> Refusal:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return Refusal(info.value)


# --- config -----------------------------------------------------------------------------------


def test_register_and_get_prefix_the_plugins_namespace(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    client = connect("hosts", False)
    client.config.RegisterOption(
        config_pb2.RegisterRequest(option=option("lists/url", config_pb2.Value(string="a"))),
        timeout=DEADLINE,
    )
    assert "plugins/hosts/lists/url" in services.config.registered_keys()
    assert services.config.get("plugins/hosts/lists/url").string == "a"

    got = client.config.GetValue(config_pb2.GetValueRequest(key="lists/url"), timeout=DEADLINE)
    assert got.value.string == "a"

    services.config.set("plugins/hosts/lists/url", config_pb2.Value(string="b"))
    got = client.config.GetValue(config_pb2.GetValueRequest(key="lists/url"), timeout=DEADLINE)
    assert got.value.string == "b"


@pytest.mark.parametrize(
    "key", ["plugins/other/secret", "../core/x", "/abs", "plugins/hosts/x", "a/../b", "x\n", ""]
)
def test_unprivileged_keys_outside_own_namespace_are_refused(
    key: str, connect: Callable[[str, bool], Client]
) -> None:
    client = connect("hosts", False)
    error = refusal(
        lambda: client.config.GetValue(config_pb2.GetValueRequest(key=key), timeout=DEADLINE)
    )
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    quoted = key.replace("\n", "\\n")
    assert f'plugin "hosts" may not read config key "{quoted}"' in error.details
    assert "plugins/hosts/" in error.details

    stream = client.config.WatchValues(
        config_pb2.WatchChangesRequest(keys=["fine", key]), timeout=DEADLINE
    )
    error = refusal(lambda: next(stream))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert f'may not watch config key "{quoted}"' in error.details


def test_register_refuses_a_key_that_is_not_plain_relative(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    client = connect("hosts", False)
    error = refusal(
        lambda: client.config.RegisterOption(
            config_pb2.RegisterRequest(option=option("../../core/dns")), timeout=DEADLINE
        )
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert '"../../core/dns"' in error.details
    assert services.config.get("core/dns").string == "9.9.9.9"


def test_unknown_key_is_not_found_naming_the_key(connect: Callable[[str, bool], Client]) -> None:
    client = connect("hosts", False)
    error = refusal(
        lambda: client.config.GetValue(config_pb2.GetValueRequest(key="nope"), timeout=DEADLINE)
    )
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert '"plugins/hosts/nope"' in error.details

    stream = client.config.WatchValues(
        config_pb2.WatchChangesRequest(keys=["nope"]), timeout=DEADLINE
    )
    error = refusal(lambda: next(stream))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert '"plugins/hosts/nope"' in error.details


def test_privileged_reads_host_keys_and_other_plugins_keys_by_full_key(
    connect: Callable[[str, bool], Client],
) -> None:
    client = connect("admin", True)
    get = client.config.GetValue
    assert get(config_pb2.GetValueRequest(key="core/dns"), timeout=DEADLINE).value.string == (
        "9.9.9.9"
    )
    secret = get(config_pb2.GetValueRequest(key="plugins/other/secret"), timeout=DEADLINE)
    assert secret.value.string == "other's secret"

    # its own options are still created under plugins/admin/, and read by their full key
    client.config.RegisterOption(
        config_pb2.RegisterRequest(option=option("mode", config_pb2.Value(string="strict"))),
        timeout=DEADLINE,
    )
    own = get(config_pb2.GetValueRequest(key="plugins/admin/mode"), timeout=DEADLINE)
    assert own.value.string == "strict"
    error = refusal(lambda: get(config_pb2.GetValueRequest(key="mode"), timeout=DEADLINE))
    assert error.code == grpc.StatusCode.NOT_FOUND


def test_identity_comes_from_the_server_not_the_request(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    hosts = connect("hosts", False)
    claims_other = (("plugin-name", "other"), ("x-plugin", "other"))
    hosts.config.RegisterOption(
        config_pb2.RegisterRequest(option=option("secret", config_pb2.Value(string="mine"))),
        metadata=claims_other,
        timeout=DEADLINE,
    )
    got = hosts.config.GetValue(
        config_pb2.GetValueRequest(key="secret"), metadata=claims_other, timeout=DEADLINE
    )
    assert got.value.string == "mine"
    assert services.config.get("plugins/hosts/secret").string == "mine"
    assert services.config.get("plugins/other/secret").string == "other's secret"

    # a notification event id that claims another plugin stays in the sender's namespace
    stream = hosts.notify.CreateNotification(
        notify_request("other:evt", custom("ok")), timeout=DEADLINE
    )
    wait_until(lambda: len(services.notifications.pending()) == 1)
    (pending,) = services.notifications.pending()
    assert (pending.plugin, pending.event_id) == ("hosts", "hosts:other:evt")
    stream.cancel()
    wait_until(lambda: services.notifications.pending() == [])


def test_watch_resends_every_watched_key_on_a_change_and_ends_when_cancelled(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    client = connect("hosts", False)
    for key in ("a", "b", "c"):
        client.config.RegisterOption(
            config_pb2.RegisterRequest(option=option(key, config_pb2.Value(string=key + "0"))),
            timeout=DEADLINE,
        )
    stream = client.config.WatchValues(
        config_pb2.WatchChangesRequest(keys=["a", "b"]), timeout=DEADLINE
    )
    wait_until(lambda: services.config.open_subscriptions == 1)

    services.config.set("plugins/hosts/c", config_pb2.Value(string="c1"))  # not watched
    services.config.set("plugins/hosts/a", config_pb2.Value(string="a1"))
    got = [(m.key, m.value.string) for m in (next(stream), next(stream))]
    assert got == [("plugins/hosts/a", "a1"), ("plugins/hosts/b", "b0")]

    services.config.set("plugins/hosts/b", config_pb2.Value(string="b1"))
    got = [(m.key, m.value.string) for m in (next(stream), next(stream))]
    assert got == [("plugins/hosts/a", "a1"), ("plugins/hosts/b", "b1")]

    stream.cancel()
    wait_until(lambda: services.config.open_subscriptions == 0)
    error = refusal(lambda: next(stream))
    assert error.code == grpc.StatusCode.CANCELLED


def test_subscription_keeps_only_the_newest_snapshot_and_close_ends_iteration() -> None:
    store = ConfigStore()
    store.register_option("core/x", option("x"), HOST_OWNER)
    store.register_option("core/y", option("y"), HOST_OWNER)
    with pytest.raises(KeyError):
        store.subscribe(["core/x", "core/unknown"])

    subscription = store.subscribe(["core/x", "core/y", "core/x"])
    assert subscription.keys == ("core/x", "core/y")
    for n in range(3):
        store.set("core/x", config_pb2.Value(int=n))
    received: list[tuple[str, int]] = []

    def read() -> None:
        received.extend((key, value.int) for key, value in subscription)

    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: len(received) == 2)
    subscription.close()
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert received == [("core/x", 2), ("core/y", 0)]
    assert store.open_subscriptions == 0


def test_store_refuses_unknown_keys_and_keys_of_another_owner() -> None:
    store = ConfigStore()
    with pytest.raises(KeyError):
        store.get("core/nope")
    with pytest.raises(KeyError):
        store.set("core/nope", config_pb2.Value())
    store.register_option("plugins/hosts/x", option("x"), "hosts")
    store.register_option("plugins/hosts/x", option("x"), "hosts")  # a restart re-registers
    with pytest.raises(ValueError, match="already registered"):
        store.register_option("plugins/hosts/x", option("x"), HOST_OWNER)


# --- notifications ----------------------------------------------------------------------------


def test_custom_action_is_answered_by_the_hosts_caller(
    sock_dir: Path,
) -> None:
    seen: list[PendingNotification] = []
    services = HostServices(notifications=NotificationCenter(on_new=seen.append))
    path = str(sock_dir / "n.sock")
    server = services.serve_backchannel("hosts", False, path)
    try:
        with grpc.insecure_channel(f"unix:{path}") as channel:
            stub = notification_pb2_grpc.NotificationServiceStub(channel)
            request = notify_request(
                "block-1", custom("allow", "Allow"), custom("deny", "Deny"), open_url("w", "u")
            )
            stream = stub.CreateNotification(request, timeout=DEADLINE)
            center = services.notifications
            wait_until(lambda: len(center.pending()) == 1)
            (pending,) = center.pending()
            assert pending == PendingNotification(
                plugin="hosts",
                event_id="hosts:block-1",
                title="T block-1",
                message="M block-1",
                actions=(
                    ActionChoice("allow", "Allow", True),
                    ActionChoice("deny", "Deny", True),
                    ActionChoice("w", "w", False),
                ),
            )
            assert seen == [pending]

            with pytest.raises(UnknownNotificationError, match='"block-1"'):
                center.answer("block-1", "deny")  # the host's id is namespaced
            with pytest.raises(ValueError, match='no action "maybe"'):
                center.answer("hosts:block-1", "maybe")
            assert len(center.pending()) == 1

            center.answer("hosts:block-1", "deny")
            assert [r.selected_action_id for r in stream] == ["deny"]
            assert center.pending() == []
            assert stream.code() == grpc.StatusCode.OK
    finally:
        server.stop(None).wait(DEADLINE)
    wait_until(lambda: not backchannel_threads())


def test_notification_without_custom_action_ends_at_once_empty(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    client = connect("hosts", False)
    request = notify_request("info", open_url("more", "https://example.org"))
    started = time.monotonic()
    assert list(client.notify.CreateNotification(request, timeout=DEADLINE)) == []
    assert time.monotonic() - started < 1.0
    assert services.notifications.pending() == []
    (shown,) = services.notifications.shown()
    assert (shown.event_id, shown.needs_answer) == ("hosts:info", False)


def test_plugin_cancel_drops_the_pending_notification(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    client = connect("hosts", False)
    stream = client.notify.CreateNotification(notify_request("q", custom("yes")), timeout=DEADLINE)
    wait_until(lambda: len(services.notifications.pending()) == 1)
    stream.cancel()
    wait_until(lambda: services.notifications.pending() == [])
    with pytest.raises(KeyError):
        services.notifications.answer("hosts:q", "yes")


def test_event_ids_are_namespaced_by_plugin(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    hosts, other = connect("hosts", False), connect("other", False)
    center = services.notifications
    hosts_stream = hosts.notify.CreateNotification(
        notify_request("evt", custom("a")), timeout=DEADLINE
    )
    other_stream = other.notify.CreateNotification(
        notify_request("evt", custom("a")), timeout=DEADLINE
    )
    unnamed = hosts.notify.CreateNotification(notify_request("", custom("a")), timeout=DEADLINE)
    wait_until(lambda: len(center.pending()) == 3)
    ids = {p.event_id for p in center.pending()}
    assert {"hosts:evt", "other:evt"} <= ids
    (generated,) = ids - {"hosts:evt", "other:evt"}
    assert generated.startswith("hosts:") and len(generated) > len("hosts:")

    # the same plugin cannot open a second prompt with an id that is still waiting
    duplicate = hosts.notify.CreateNotification(
        notify_request("evt", custom("a")), timeout=DEADLINE
    )
    assert refusal(lambda: next(duplicate)).code == grpc.StatusCode.ALREADY_EXISTS

    center.answer("other:evt", "a")
    assert [r.selected_action_id for r in other_stream] == ["a"]
    assert {p.event_id for p in center.pending()} == {"hosts:evt", generated}
    hosts_stream.cancel()
    unnamed.cancel()


def test_stopping_the_server_ends_open_streams(services: HostServices, sock_dir: Path) -> None:
    services.config.register_option("plugins/hosts/a", option("a"), "hosts")
    path = str(sock_dir / "stop.sock")
    server = services.serve_backchannel("hosts", False, path)
    with grpc.insecure_channel(f"unix:{path}") as channel:
        config = config_pb2_grpc.ConfigServiceStub(channel)
        notify = notification_pb2_grpc.NotificationServiceStub(channel)
        watch = config.WatchValues(config_pb2.WatchChangesRequest(keys=["a"]), timeout=DEADLINE)
        prompt = notify.CreateNotification(notify_request("q", custom("y")), timeout=DEADLINE)
        wait_until(
            lambda: (
                services.config.open_subscriptions == 1
                and len(services.notifications.pending()) == 1
            )
        )
        server.stop(None).wait(DEADLINE)
        wait_until(
            lambda: (
                services.config.open_subscriptions == 0 and services.notifications.pending() == []
            )
        )
        assert refusal(lambda: next(watch)).code != grpc.StatusCode.OK
        assert refusal(lambda: next(prompt)).code != grpc.StatusCode.OK
    wait_until(lambda: not backchannel_threads())


# --- plugin manager ---------------------------------------------------------------------------


def test_privileged_plugin_manager_goes_to_the_backend(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    backend = services.plugin_manager
    assert isinstance(backend, Backend)
    manager = connect("admin", True).manager

    listed = manager.ListPlugins(plugins_pb2.ListPluginsRequest(), timeout=DEADLINE)
    assert [p.config.name for p in listed.plugins] == ["allowlist", "hosts"]
    assert list(listed.plugins[0].config.plugin_types) == [plugins_pb2.PLUGIN_TYPE_RESOLVER]

    manager.StopPlugin(plugins_pb2.StopPluginRequest(name="hosts"), timeout=DEADLINE)
    manager.StartPlugin(plugins_pb2.StartPluginRequest(name="hosts"), timeout=DEADLINE)
    assert backend.calls == [("stop", "hosts"), ("start", "hosts")]

    error = refusal(
        lambda: manager.StopPlugin(plugins_pb2.StopPluginRequest(name="ghost"), timeout=DEADLINE)
    )
    assert (error.code, error.details) == (
        grpc.StatusCode.NOT_FOUND,
        'no plugin "ghost" is configured',
    )
    error = refusal(
        lambda: manager.StartPlugin(plugins_pb2.StartPluginRequest(name="hosts"), timeout=DEADLINE)
    )
    assert (error.code, error.details) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'plugin "hosts" is already running',
    )


def test_register_and_unregister_are_unimplemented(
    connect: Callable[[str, bool], Client],
) -> None:
    manager = connect("admin", True).manager
    for call in (
        lambda: manager.RegisterPlugin(
            plugins_pb2.RegisterPluginRequest(config=plugins_pb2.PluginConfig(name="evil")),
            timeout=DEADLINE,
        ),
        lambda: manager.UnregisterPlugin(
            plugins_pb2.UnregisterPluginRequest(name="hosts"), timeout=DEADLINE
        ),
    ):
        error = refusal(call)
        assert error.code == grpc.StatusCode.UNIMPLEMENTED
        assert "not available yet" in error.details
        assert "signature verification" in error.details


def test_unprivileged_plugin_manager_is_permission_denied(
    services: HostServices, connect: Callable[[str, bool], Client]
) -> None:
    manager = connect("hosts", False).manager
    calls: list[Callable[[], object]] = [
        lambda: manager.ListPlugins(plugins_pb2.ListPluginsRequest(), timeout=DEADLINE),
        lambda: manager.StartPlugin(plugins_pb2.StartPluginRequest(name="x"), timeout=DEADLINE),
        lambda: manager.StopPlugin(plugins_pb2.StopPluginRequest(name="x"), timeout=DEADLINE),
        lambda: manager.RegisterPlugin(plugins_pb2.RegisterPluginRequest(), timeout=DEADLINE),
        lambda: manager.UnregisterPlugin(
            plugins_pb2.UnregisterPluginRequest(name="x"), timeout=DEADLINE
        ),
    ]
    for call in calls:
        error = refusal(call)
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
        assert error.details == (
            'plugin "hosts" is not privileged: the plugin manager is served only to privileged '
            "plugins"
        )
    backend = services.plugin_manager
    assert isinstance(backend, Backend)
    assert backend.calls == []


# --- the server itself ------------------------------------------------------------------------


def test_oversized_request_is_refused(connect: Callable[[str, bool], Client]) -> None:
    client = connect("admin", True)
    huge = "k" * (MAX_MESSAGE_BYTES + 1)
    error = refusal(
        lambda: client.config.GetValue(config_pb2.GetValueRequest(key=huge), timeout=DEADLINE)
    )
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_serve_backchannel_refuses_bad_names_and_paths(sock_dir: Path) -> None:
    services = HostServices()
    with pytest.raises(ValueError, match="plugin name"):
        services.serve_backchannel("a:b", False, str(sock_dir / "x.sock"))
    with pytest.raises(LoaderError, match="longer than"):
        services.serve_backchannel("hosts", False, "/tmp/" + "x" * 200)
    with pytest.raises(LoaderError, match="cannot serve"):
        services.serve_backchannel("hosts", False, str(sock_dir / "missing" / "x.sock"))
    wait_until(lambda: not backchannel_threads())


def test_a_shown_notification_can_be_dismissed_and_a_waiting_one_cannot() -> None:
    center = NotificationCenter()
    shown = center.show("p", notification_pb2.Notification(title="Note", message="no actions"))
    assert [n.event_id for n in center.shown()] == [shown.event_id]
    center.dismiss(shown.event_id)
    assert center.shown() == []
    with pytest.raises(KeyError, match="no shown notification"):
        center.dismiss(shown.event_id)
