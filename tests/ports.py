"""Ports for the servers tests start, without the bind-then-close race.

Choosing a free port by binding it, closing it and handing the number on leaves a gap in which another
process (a parallel test worker, a podman port mapping) can take it. Instead the test binds and listens
itself and hands the server the socket: `python -m service` serves an inherited one
(`DROPTUNE_LISTEN_FD`), uvicorn in-process takes `sockets=[...]`. The test keeps the socket open until
the server is gone, so the port is never free for anyone else meanwhile.
"""

from __future__ import annotations

import socket


def listening_socket() -> socket.socket:
    """A TCP socket listening on a free loopback port, inheritable by child processes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def served_by_fd(sock: socket.socket) -> dict[str, str]:
    """The environment that makes `python -m service` serve `sock` (pass its fd with `pass_fds`)."""
    return {"DROPTUNE_LISTEN_FD": str(sock.fileno()), "DROPTUNE_PORT": str(port_of(sock))}


def free_port() -> int:
    """A port free now, for a server that binds it itself where no socket can be handed over (a
    container's, published by podman; the local S3 server; the benchmarks' services), or for an
    address nothing listens on. The race above remains: container tests run in one xdist group, and
    the S3 server is started again on another port if it loses."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return port_of(sock)
