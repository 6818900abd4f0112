"""Watch: the hub that feeds watchers live events or history, and the per-stream response queue."""

from etcdpy.server.watch.hub import WatchHub
from etcdpy.server.watch.stream import WatchStream, fragment
from etcdpy.server.watch.watcher import Watcher

__all__ = ["WatchHub", "WatchStream", "Watcher", "fragment"]
