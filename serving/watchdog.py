"""A server worker that outlives its parent holds the port, and the next `omnidecide serve` fails with "Address
already in use". `omnidecide serve` sets OMNIDECIDE_EXIT_WITH_PARENT; each worker then watches its parent process
and stops itself (SIGTERM, then a hard exit) when the parent is gone, even when the parent was killed with SIGKILL
and had no chance to stop it.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

ENV = "OMNIDECIDE_EXIT_WITH_PARENT"
log = logging.getLogger(__name__)


def exit_with_parent(every_s: float = 0.5, grace_s: float = 5.0) -> threading.Thread | None:
    """Start the watch (a daemon thread) when the environment asks for it; returns the thread or None."""
    if not os.environ.get(ENV):
        return None
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        log.warning("parent process %d is gone: stopping worker %d", parent, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)  # the server's own graceful shutdown
        time.sleep(grace_s)
        os._exit(1)

    t = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    t.start()
    return t


def port_holder(host: str, port: int) -> str | None:
    """None when `host:port` can be bound; else who holds it (pid and command line when the OS says)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return None
        except OSError as e:
            reason = e.strerror or str(e)
    try:
        import psutil

        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                try:
                    cmd = " ".join(psutil.Process(c.pid).cmdline())[:200]
                except psutil.Error:
                    cmd = "?"
                return f"pid {c.pid} ({cmd})"
    except Exception:  # noqa: BLE001 - naming the holder is a courtesy; the refusal stands without it
        pass
    return f"another process ({reason})"
