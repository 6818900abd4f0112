"""Client workers: gRPC for clients served by processes beside the member, so it grows past one core.

    calls.py   the calls channel between a worker and the core: method numbers, frames (calls,
               stream messages, credit, cancel)
    core.py    the core's side: CallServer (forwarded calls served by the member's own servicers)
               and WorkerPool (starts the worker processes, replaces one that dies)
    worker.py  a worker process: grpcio on its own Unix socket; every call of etcd's services
               forwarded to the core as bytes, grpc.health.v1's proxied to its grpcio, and any
               other path answered UNIMPLEMENTED as the core's grpcio answers it

`--experimental-client-workers N` turns them on; each client front's splicer then spreads its gRPC
connections over N workers of its own (an https front's serve TLS with the member's certificates).
The design and its measurements: docs/client-port.md ("Workers as built").
"""
