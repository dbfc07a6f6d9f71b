#!/usr/bin/env python3
"""Exit 0 when a gRPC server answers `grpc.health.v1.Health/Check` with SERVING.

The container HEALTHCHECK of the gateway image, a stand-in for `grpc_health_probe`
written with what the image already has (grpcio and grpcio-health-checking), so the
image needs no extra binary:

    grpc_health_check.py [--addr 127.0.0.1:50051] [--service NAME] [--timeout 3]

Exit codes: 0 SERVING, 1 not serving or no answer, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(addr: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """(serving, status name or error) of one Health/Check call."""
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return False, f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def _default_addr() -> str:
    # The gateway listens on ATELIER_GRPC_LISTEN (0.0.0.0:50051 in the image); probe its port locally.
    listen = os.environ.get("ATELIER_GRPC_LISTEN", "127.0.0.1:50051")
    port = listen.rsplit(":", 1)[-1]
    return f"127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default=_default_addr(), help="host:port of the gRPC server")
    parser.add_argument("--service", default="", help="service name to check ('' is the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    serving, status = check(args.addr, args.service, args.timeout)
    print(f"{args.addr} {args.service or '<server>'}: {status}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
