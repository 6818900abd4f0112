"""``python -m etcdpy.server``: run a member without loading the client CLI (same as ``etcdpy server``)."""

from etcdpy.server.main import command

command(prog_name="etcdpy server")
