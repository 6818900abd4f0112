"""``python -m etcdpy.server``: run a member without loading the client CLI (same as ``etcdpy server``)."""

from etcdpy import grpcenv

grpcenv.apply()  # before the server imports grpc

from etcdpy.server.main import command  # noqa: E402 (after the settings)

command(prog_name="etcdpy server")
