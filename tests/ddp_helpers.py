"""Shared pieces of the 2-process gloo tests (tests/integration/test_*_ddp.py)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A free TCP port on localhost for the process group's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_slice(rank: int, sizes: list[int]) -> slice:
    """Rank `rank`'s rows of a global batch split into local batches of `sizes`."""
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])
