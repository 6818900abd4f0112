"""Client workers: gRPC for clients served by processes beside the member, so it grows past one core.

    calls.py   the calls channel between a worker and the core: method numbers, frames
    core.py    the core's side: CallServer (forwarded calls served by the member's own servicers)
               and WorkerPool (starts the worker processes, replaces one that dies)
    worker.py  a worker process: grpcio on its own Unix socket; unary calls forwarded to the core,
               streams proxied to the core's grpcio

`--experimental-client-workers N` turns them on; each client front's splicer then spreads its gRPC
connections over N workers of its own (an https front's serve TLS with the member's certificates).  The design and its measurements: docs/client-port.md ("Workers").
"""
