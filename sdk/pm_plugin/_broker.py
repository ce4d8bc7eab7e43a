"""The plugin's end of go-plugin's gRPC broker.

The host opens `plugin.GRPCBroker/StartStream` right after connecting and announces, as
`ConnInfo{service_id, network, address}`, each extra listener it serves (the backchannel with
the host services among them). The announcement may arrive after the Configure call that
names its id, so `dial` waits for it (go-plugin waits 5 s and fails with "timeout waiting
for connection info"). This plugin never announces listeners of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from pm_plugin.wire.goplugin import grpc_broker_pb2, grpc_broker_pb2_grpc

#: How long `dial` waits for the host's ConnInfo, as go-plugin does.
DIAL_TIMEOUT = 5.0
#: Receive/send bound on backchannel calls.
MAX_MESSAGE = 4 * 1024 * 1024


class PluginBroker(grpc_broker_pb2_grpc.GRPCBrokerServicer):
    """Collects the host's ConnInfo announcements and dials them by id."""

    def __init__(self) -> None:
        self._infos: dict[int, grpc_broker_pb2.ConnInfo] = {}
        self._cond = threading.Condition()

    def StartStream(
        self,
        request_iterator: Iterator[grpc_broker_pb2.ConnInfo],
        context: grpc.ServicerContext,
    ) -> Iterator[grpc_broker_pb2.ConnInfo]:
        ended = threading.Event()
        context.add_callback(ended.set)

        def read() -> None:
            try:
                for info in request_iterator:
                    with self._cond:
                        self._infos[info.service_id] = info
                        self._cond.notify_all()
            except grpc.RpcError:
                pass
            finally:
                ended.set()

        threading.Thread(target=read, name="pm-plugin-broker", daemon=True).start()
        ended.wait()
        yield from ()

    def dial(self, service_id: int, timeout: float = DIAL_TIMEOUT) -> grpc.Channel:
        """A channel to the listener the host announced as `service_id`.

        Raises:
            TimeoutError: the host never announced it.
            ValueError: it announced a network other than unix.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: service_id in self._infos, timeout):
                raise TimeoutError("timeout waiting for connection info")
            info = self._infos[service_id]
        if info.network != "unix":
            raise ValueError(f"the host announced broker network {info.network!r}, not unix")
        return grpc.insecure_channel(
            f"unix:{info.address}",
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
        )
