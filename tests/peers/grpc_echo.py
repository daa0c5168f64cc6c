#!/usr/bin/env python3
"""Real gRPC peers for tests/tests/proxyless_grpc.rs (Python grpcio, no generated code: raw bytes).

  grpc_echo.py server NAME
      Serves /echo.Echo/Call on 127.0.0.1 (a free port), answering every call with NAME.
      Prints one JSON line {"port": N} once serving, then runs until killed.

  grpc_echo.py client TARGET
      A proxyless xDS client when TARGET is xds:///HOST:PORT (GRPC_XDS_BOOTSTRAP names the control plane).
      Reads commands from stdin, one per line: a number N makes N calls on the same channel and prints one
      JSON line {"counts": {NAME: n, ...}, "errors": {CODE: n, ...}, "first_error": "..."}; a round stops early
      after MAX_ERRORS failed calls. Ends at EOF.
"""

import json
import sys
from concurrent import futures

import grpc

METHOD = "/echo.Echo/Call"
CALL_TIMEOUT_S = 5
MAX_ERRORS = 3


def serve(name):
    reply = name.encode()
    handler = grpc.method_handlers_generic_handler(
        "echo.Echo", {"Call": grpc.unary_unary_rpc_method_handler(lambda request, context: reply)}
    )
    # grpcio sets SO_REUSEPORT by default: two servers could silently share a port.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    server.wait_for_termination()


def client(target):
    channel = grpc.insecure_channel(target)
    # No serializers: requests and responses are raw bytes.
    call = channel.unary_unary(METHOD)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        counts, errors, first_error = {}, {}, None
        for _ in range(int(line)):
            try:
                name = call(b"hi", timeout=CALL_TIMEOUT_S, wait_for_ready=True).decode()
                counts[name] = counts.get(name, 0) + 1
            except grpc.RpcError as e:
                code = e.code().name
                errors[code] = errors.get(code, 0) + 1
                first_error = first_error or f"{code}: {e.details()}"
                if sum(errors.values()) >= MAX_ERRORS:
                    break
        print(json.dumps({"counts": counts, "errors": errors, "first_error": first_error}), flush=True)
    channel.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("server", "client"):
        sys.exit(__doc__)
    (serve if sys.argv[1] == "server" else client)(sys.argv[2])
