"""HTTP on the client port: the front that shares it with gRPC, HTTP/1.1, the JSON gateway, /version.

    front.py        Front: owns the public client sockets; gRPC spliced to grpcio, HTTP/1.1 to the loop
    clienthello.py  the ALPN protocols of a TLS ClientHello, read without terminating TLS
    http11.py       HTTP/1.1 requests and answers (whole or chunked), with bounded time and size
    gateway.py      etcd's grpc-gateway paths and JSON, over the member's own servicers
    routes.py       what each listener kind answers: /version, health and metrics, the gateway

The design and its measurements: docs/client-port.md; the gateway's behaviour: docs/gateway.md.
"""
