#!/usr/bin/python3
"""bench/py_health_server.py - the reference point for recd's RPC layer: a
Python grpcio server answering grpc.health.v1.Health/Check with SERVING and
nothing else. It uses a generic handler with hand-written serialization, so it
needs no generated stubs; what it costs per call is grpcio's own overhead.

Run with Debian's interpreter (/usr/bin/python3, python3-grpcio). Prints
`port=N` on stdout once it listens; stops on SIGINT or SIGTERM.
"""
import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc

# HealthCheckResponse{status: SERVING}: field 1, varint, value 1.
SERVING = b"\x08\x01"


def check(request, context):
    """Any request gets SERVING; the request bytes are not even parsed."""
    return SERVING


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--max-workers", type=int, default=4, help="handler thread pool size")
    args = ap.parse_args()

    # No (de)serializers: grpcio then hands the handler the raw request bytes
    # and sends the bytes it returns as they are.
    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.max_workers),
                         handlers=[handler])
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        print(f"py_health_server: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"port={port}", flush=True)
    stop.wait()
    server.stop(grace=1).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
