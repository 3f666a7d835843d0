"""Write the seed corpora: small valid inputs made with the codecs' own encoders.

``python -m fuzz.seeds`` (re)writes ``fuzz/corpus/TARGET/``. Each seed starts with the
control byte the target's ``check`` reads (side, part, split).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import h2.config
import h2.connection

from streams.backends.framer import codec as framer
from streams.backends.spdy.codec import SpdyCodec
from streams.backends.spdy.codec_frames import GoAwayStatus, RstStatus
from streams.backends.spdy.codec_headers import encode_header_block as spdy_block
from streams.backends.ssh import _codec as ssh

ROOT = Path(__file__).parent / "corpus"
HEADERS = [("x-service", "echo"), ("user-agent", "streams/1"), ("x-many", "a"), ("x-many", "b")]


def _framer() -> list[bytes]:
    open_block = framer.encode_header_block(
        framer.HeaderBlock(kind=framer.BlockKind.OPEN, headers=tuple(HEADERS))
    )
    reject = framer.encode_header_block(
        framer.HeaderBlock(
            kind=framer.BlockKind.REJECT, code=7, reason="busy", retryable=True, headers=()
        )
    )
    accept = framer.encode_header_block(
        framer.HeaderBlock(kind=framer.BlockKind.ACCEPT, headers=(("x-ok", "1"),))
    )
    # what a client sends a server: open stream 1 with its header block and data, then more
    to_server = (
        framer.encode_data_header(1, len(open_block) + 5, framer.Flag.SYN)
        + open_block
        + b"hello"
        + framer.encode_window_update(1, 4096)
        + framer.encode_data_header(3, 0, framer.Flag.SYN)
        + framer.encode_data_header(1, 3, framer.Flag.FIN)
        + b"bye"
        + framer.encode_ping(7)
        + framer.encode_data_header(3, 0, framer.Flag.RST)
        + framer.encode_go_away()
    )
    # what a server sends a client: accept stream 1, reply, ping answer, go away
    to_client = (
        framer.encode_data_header(1, len(accept) + 2, framer.Flag.ACK)
        + accept
        + b"hi"
        + framer.encode_window_update(1, 1 << 20)
        + framer.encode_ping(7, ack=True)
        + framer.encode_data_header(1, 0, framer.Flag.FIN)
        + framer.encode_go_away(framer.GoAwayCode.PROTOCOL_ERROR)
    )
    seeds = []
    for split in (0x0, 0x7, 0xF):
        seeds.append(bytes([split]) + to_server)
        seeds.append(bytes([0x10 | split]) + to_client)
        for block in (open_block, reject, accept):
            seeds.append(bytes([0x20 | split]) + block + b"rest")
    return seeds


def _spdy() -> list[bytes]:
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False)
    one = client.next_stream_id()
    three = client.next_stream_id()
    to_server = (
        client.settings([(7, 65536), (4, 100)])
        + client.syn_stream(one, HEADERS)
        + client.data_header(one, 5)
        + b"hello"
        + client.window_update(one, 4096)
        + client.syn_stream(three, [("x-service", "other")], fin=True)
        + client.headers(one, [("x-trailer", "t")])
        + client.data_header(one, 0, fin=True)
        + client.ping(client.next_ping_id())
        + client.rst_stream(three, RstStatus.CANCEL)
        + client.goaway()
    )
    # the server answers another client's stream 5 (the harness's client did not open it:
    # that path is covered too)
    other = SpdyCodec(client=True)
    server.receive_data(other.syn_stream(5, [("a", "b")]))
    to_client = (
        server.settings([(7, 1 << 20)], clear=True)
        + server.syn_reply(5, [("x-ok", "1")])
        + server.data_header(5, 2)
        + b"hi"
        + server.headers(5, [("x-more", "2")], fin=True)
        + server.ping(1)
        + server.goaway(GoAwayStatus.PROTOCOL_ERROR)
    )
    seeds = []
    for split in (0x0, 0x7, 0xF):
        seeds.append(bytes([split]) + to_server)
        seeds.append(bytes([0x10 | split]) + to_client)
    seeds.append(bytes([0x20]) + spdy_block(HEADERS))
    seeds.append(bytes([0x20]) + spdy_block([]))
    return seeds


def _http2() -> list[bytes]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    request = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    client.send_headers(1, [*request, *HEADERS])
    client.send_data(1, b"hello")
    client.increment_flow_control_window(4096)
    client.send_headers(3, request, end_stream=True)
    client.ping(b"12345678")
    client.reset_stream(3)
    client.send_data(1, b"", end_stream=True)
    to_server = client.data_to_send()

    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    server.receive_data(to_server)
    server.send_headers(1, [(":status", "200"), ("x-ok", "1")])
    server.send_data(1, b"hi", end_stream=True)
    server.close_connection()
    to_client = server.data_to_send()

    settings = base64.urlsafe_b64encode(bytes.fromhex("000300000064000400010000")).rstrip(b"=")
    upgrade = (
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\nContent-Length: 0\r\n\r\n"
    )
    seeds = []
    for split in (0x0, 0x7, 0xF):
        seeds.append(bytes([split]) + to_server)
        seeds.append(bytes([0x40 | split]) + to_server[24:])
        seeds.append(bytes([0x10 | split]) + to_client)
        seeds.append(bytes([0x20 | split]) + upgrade)
    return seeds


def _ssh() -> list[bytes]:
    frames = [
        ssh.encode_open(HEADERS),
        ssh.encode_open([]),
    ]
    replies = [
        ssh.encode_reply(accepted=True, headers=[("x-ok", "1")]),
        ssh.encode_reply(accepted=False, retryable=True, code=7, reason="busy"),
    ]
    control = ssh.encode_control(ssh.PING, 7) + ssh.encode_control(ssh.PONG, 7) + ssh.GOAWAY
    seeds = []
    for split in (0x0, 0x7, 0xF):
        seeds += [bytes([split]) + frame + b"data" for frame in frames]
        seeds += [bytes([0x10 | split]) + frame + b"data" for frame in replies]
        seeds.append(bytes([0x20 | split]) + control)
    seeds += [bytes([0x40]) + text for text in (b"127.0.0.1:22", b"[::1]:2222", b"host:0")]
    return seeds


def _topology() -> list[bytes]:
    here = Path(__file__).parent.parent
    texts = [(here / "streams" / "config" / "default.yaml").read_bytes()]
    texts += [path.read_bytes() for path in sorted((here / "deploy" / "topologies").glob("*.yaml"))]
    texts.append(b"version: 1\nservers:\n  - {name: a, backend: framer, listen: 127.0.0.1:0}\n")
    return texts


def main() -> None:
    """Write every target's seeds, named by content."""
    for target, make in {
        "framer": _framer,
        "spdy": _spdy,
        "http2": _http2,
        "ssh": _ssh,
        "topology": _topology,
    }.items():
        directory = ROOT / target
        directory.mkdir(parents=True, exist_ok=True)
        for seed in make():
            name = hashlib.sha1(seed).hexdigest()[:16]
            (directory / name).write_bytes(seed)
        print(f"{target}: {len(list(directory.iterdir()))} seeds")


if __name__ == "__main__":
    main()
