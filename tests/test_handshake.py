"""parse_handshake: the go-plugin line in its five- and six-field forms, and every refusal."""

from __future__ import annotations

import pytest

from host.errors import HandshakeError
from host.handshake import Handshake, parse_handshake


@pytest.mark.parametrize(
    "line",
    [
        "1|1|unix|/tmp/plugin123|grpc\n",
        "1|1|unix|/tmp/plugin123|grpc|\n",
        "1|1|unix|/tmp/plugin123|grpc|",
    ],
)
def test_accepts_five_and_six_fields(line: str) -> None:
    assert parse_handshake(line) == Handshake(1, 1, "unix", "/tmp/plugin123", "grpc")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("hello world\n", "not a go-plugin handshake"),
        ("1|1|unix|/tmp/p\n", "not a go-plugin handshake"),
        ("2|1|unix|/tmp/p|grpc\n", "core protocol 2"),
        ("1|2|unix|/tmp/p|grpc\n", "offered only 1"),
        ("1|1|tcp|127.0.0.1:1234|grpc\n", "only unix"),
        ("1|1|unix|/tmp/p|netrpc\n", "only grpc"),
        ("1|1|unix|relative/p|grpc\n", "not absolute"),
        ("x|1|unix|/tmp/p|grpc\n", "non-numeric"),
        ("1|1|unix|/tmp/p|grpc|CERTDATA\n", "AutoMTLS"),
    ],
)
def test_refuses_with_the_line_quoted(line: str, needle: str) -> None:
    with pytest.raises(HandshakeError) as err:
        parse_handshake(line)
    assert needle in str(err.value)
    assert repr(line)[1:20] in str(err.value)


def test_the_host_decides_which_app_versions_it_offered() -> None:
    # A Go plugin announces 1 even when only 2 was offered: the host must refuse.
    with pytest.raises(HandshakeError, match="offered only 2"):
        parse_handshake("1|1|unix|/tmp/p|grpc|\n", offered=(2,))
