"""HTTP on the client port: the front that shares it with gRPC, HTTP/1.1, the JSON gateway, /version.

    splicer.py      Splicer: accepts on the public client sockets, tells gRPC from HTTP/1.1, splices
                    gRPC to grpcio's Unix socket (a process of its own by default, or threads)
    front.py        Front: the member's side of a client listener (the splicer, HTTP/1.1 on the loop)
    clienthello.py  the ALPN protocols of a TLS ClientHello, read without terminating TLS
    http11.py       HTTP/1.1 requests and answers (whole or chunked), with bounded time and size
    gateway.py      etcd's grpc-gateway paths and JSON, over the member's own servicers
    routes.py       what each listener kind answers: /version, health and metrics, the gateway

The design and its measurements: docs/client-port.md; the gateway's behaviour: docs/gateway.md.
"""
