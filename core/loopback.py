"""A TCP connection to a port of this machine can connect to itself.

When nothing listens on a port inside the kernel's ephemeral range (net.ipv4.ip_local_port_range), a connect to it
may be given that same port as its own source port, and TCP's simultaneous open joins the socket to itself: the
connect succeeds, the client reads back its own request, and the port is now held, so the server that was about to
bind it fails ("address already in use"). Every client of the lab checks for it and treats it as refused.
"""

from __future__ import annotations

import errno
import socket


def to_itself(sock: socket.socket) -> bool:
    """Whether a connected socket is joined to itself (its own address is its peer's)."""
    try:
        return sock.getsockname() == sock.getpeername()
    except OSError:
        return False


def refuse_itself(sock: socket.socket) -> None:
    """Raise ConnectionRefusedError for a socket connected to itself (the caller closes it)."""
    if to_itself(sock):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "connected to itself: nothing listens on that port")
