"""Length-prefixed protobuf frames on a stream socket: the decision socket's wire format.

A frame is its length as 4 bytes big-endian, then that many bytes of one serialized message.
Both ends refuse a frame over `MAX_FRAME`, so a peer can neither make the other allocate
without bound nor desynchronise it. Used by the SDK (serving) and the host (calling).
"""

from __future__ import annotations

import socket
import struct
import time

LENGTH = struct.Struct(">I")
#: The largest frame either end accepts, as for gRPC messages.
MAX_FRAME = 4 * 1024 * 1024


class FrameError(Exception):
    """The peer closed the socket mid-frame or sent a frame over MAX_FRAME."""


def write_frame(sock: socket.socket, payload: bytes) -> None:
    if len(payload) > MAX_FRAME:
        raise FrameError(f"a frame of {len(payload)} bytes is over the {MAX_FRAME}-byte limit")
    sock.sendall(LENGTH.pack(len(payload)) + payload)


def _read_exact(sock: socket.socket, size: int, deadline: float | None) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(left)
        count = sock.recv_into(view[got:])
        if count == 0:
            if got == 0:
                return None
            raise FrameError("the peer closed the socket in the middle of a frame")
        got += count
    return bytes(buffer)


def read_frame(sock: socket.socket, deadline: float | None = None) -> bytes | None:
    """The next frame's payload; None when the peer closed the socket between frames.

    Raises:
        TimeoutError: `deadline` (a time.monotonic() value) passed.
        FrameError: a truncated or oversized frame.
    """
    header = _read_exact(sock, LENGTH.size, deadline)
    if header is None:
        return None
    (size,) = LENGTH.unpack(header)
    if size > MAX_FRAME:
        raise FrameError(f"the peer announced a frame of {size} bytes, over {MAX_FRAME}")
    payload = _read_exact(sock, size, deadline) if size else b""
    if payload is None:
        raise FrameError("the peer closed the socket in the middle of a frame")
    return payload
