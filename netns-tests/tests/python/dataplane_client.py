#!/usr/bin/env python3
"""A Python gRPC client of the dataplane API (x0tta6bl4.dataplane.v1), for
netns-tests/tests/python_client.rs: proof that a client in another language works.

    dataplane_client.py SOCKET [PROTO_ROOT]
    dataplane_client.py HOST:PORT [PROTO_ROOT] --cert C --key K --bundle B --server-name N

Compiles dataplane.proto with grpc_tools.protoc into a temporary directory (no generated
code is committed), connects to the dataplane's Unix socket (plain HTTP/2: access is
governed by the socket's file permissions; :authority "localhost", see below) or to its
TCP listener over mutual TLS (our SVID and key, the trust bundle; the server must present
the DNS name N, which `x0ctl ca issue --dns` puts beside its SPIFFE ID: grpcio checks a
host name, not a SPIFFE ID), and calls GetInfo, AddRoute, ListRoutes,
an invalid AddRoute, DeleteRoute and the standard health check. Progress goes to
stderr; stdout gets one JSON object:

    caller, interfaces, added_seen, invalid_code, invalid_message, deleted, health

`health` is null when grpcio-health-checking is not installed (the check is skipped).
Needs grpcio and grpcio-tools (scripts/setup.sh installs them in /opt/x0tta6bl4/pyenv).
"""

import argparse
import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

PROTO = "x0tta6bl4/dataplane/v1/dataplane.proto"
SERVICE = "x0tta6bl4.dataplane.v1.Dataplane"
PREFIX = "10.123.0.0/16"
INVALID_PREFIX = "10.123.0.1/16"  # host bits set
VIA = ("198.18.2.2", "eth2")
TIMEOUT = 10  # seconds, every RPC


def log(msg):
    print(f"[python-client] {msg}", file=sys.stderr, flush=True)


def compile_proto(proto_root, out_dir):
    """Generates dataplane_pb2 and dataplane_pb2_grpc under out_dir and imports them."""
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            os.path.join(proto_root, PROTO),
        ]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc}) on {os.path.join(proto_root, PROTO)}")
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("x0tta6bl4.dataplane.v1.dataplane_pb2")
    pb_grpc = importlib.import_module("x0tta6bl4.dataplane.v1.dataplane_pb2_grpc")
    return pb, pb_grpc


def routes(stub, pb, origin):
    """Every route of `origin`, from the server-streamed chunks."""
    out = []
    for chunk in stub.ListRoutes(pb.ListRoutesRequest(origin=origin), timeout=TIMEOUT):
        out.extend(chunk.routes)
    return out


def health_check(channel):
    """The standard grpc.health.v1 check of the service, or None without grpc_health."""
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc
    except ImportError:
        log("grpc_health not installed: health check skipped")
        return None
    resp = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=TIMEOUT
    )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def channel(args):
    """A Unix-socket channel, or a mutual-TLS one when a certificate is given."""
    if args.cert is None:
        # gRPC C-core (since 1.57) sends the %-encoded socket path as :authority, which
        # the server's HTTP/2 stack (h2) rejects as malformed: RST_STREAM PROTOCOL_ERROR,
        # INTERNAL in the client (grpc/grpc#38142, hyperium/h2#487). "localhost", as
        # grpc-go and tonic send on Unix sockets, is accepted.
        options = [("grpc.default_authority", "localhost")]
        return grpc.insecure_channel("unix:" + args.target, options=options)
    read = lambda p: open(p, "rb").read()
    creds = grpc.ssl_channel_credentials(read(args.bundle), read(args.key), read(args.cert))
    options = [("grpc.ssl_target_name_override", args.server_name)]
    return grpc.secure_channel(args.target, creds, options=options)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("target")
    parser.add_argument("proto_root", nargs="?", default=os.path.join(here, "..", "..", "..", "proto", "proto"))
    for flag in ("--cert", "--key", "--bundle", "--server-name"):
        parser.add_argument(flag)
    args = parser.parse_args()
    proto_root = os.path.abspath(args.proto_root)

    with tempfile.TemporaryDirectory(prefix="x0-pyproto-") as gen:
        pb, pb_grpc = compile_proto(proto_root, gen)
        log(f"compiled {PROTO} (grpcio {grpc.__version__})")

        with channel(args) as ch:
            grpc.channel_ready_future(ch).result(timeout=TIMEOUT)
            stub = pb_grpc.DataplaneStub(ch)

            info = stub.GetInfo(pb.GetInfoRequest(), timeout=TIMEOUT)
            interfaces = [i.name for i in info.interfaces]
            log(f"GetInfo: version {info.version}, caller {info.caller}, interfaces {interfaces}")

            def route(prefix):
                return pb.Route(
                    prefix=prefix, next_hops=[pb.NextHop(gateway=VIA[0], interface=VIA[1])]
                )

            stub.AddRoute(pb.AddRouteRequest(route=route(PREFIX)), timeout=TIMEOUT)
            log(f"AddRoute {PREFIX} via {VIA[0]}@{VIA[1]}")

            api = routes(stub, pb, pb.ROUTE_ORIGIN_API)
            added_seen = any(
                r.prefix == PREFIX
                and r.origin == pb.ROUTE_ORIGIN_API
                and [(n.gateway, n.interface) for n in r.next_hops] == [VIA]
                for r in api
            )
            log(f"ListRoutes(API): {[r.prefix for r in api]}")

            invalid_code = invalid_message = None
            try:
                stub.AddRoute(pb.AddRouteRequest(route=route(INVALID_PREFIX)), timeout=TIMEOUT)
                log(f"AddRoute {INVALID_PREFIX} was accepted")
            except grpc.RpcError as e:
                invalid_code, invalid_message = e.code().name, e.details()
                log(f"AddRoute {INVALID_PREFIX}: {invalid_code}: {invalid_message}")

            # A 10 kB value: the refusal must stay short (grpcio refuses a large grpc-message).
            long_code = long_message = None
            try:
                stub.AddRoute(pb.AddRouteRequest(route=route("1" * 10_000)), timeout=TIMEOUT)
            except grpc.RpcError as e:
                long_code, long_message = e.code().name, e.details()
                log(f"AddRoute of a 10 kB prefix: {long_code}: {long_message}")

            stub.DeleteRoute(pb.DeleteRouteRequest(prefix=PREFIX), timeout=TIMEOUT)
            deleted = all(r.prefix != PREFIX for r in routes(stub, pb, pb.ROUTE_ORIGIN_UNSPECIFIED))
            log(f"DeleteRoute {PREFIX}: gone from ListRoutes: {deleted}")

            health = health_check(ch)
            log(f"health of {SERVICE}: {health}")

    print(
        json.dumps(
            {
                "caller": info.caller,
                "interfaces": interfaces,
                "added_seen": added_seen,
                "invalid_code": invalid_code,
                "invalid_message": invalid_message,
                "long_code": long_code,
                "long_message": long_message,
                "deleted": deleted,
                "health": health,
            }
        )
    )


if __name__ == "__main__":
    main()
