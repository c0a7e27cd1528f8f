"""The tier's guards hold: a unit test cannot reach the network, yet asyncio still runs."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.unit.guards import NetworkUseInUnitTest


def test_connecting_anywhere_fails() -> None:
    with pytest.raises(NetworkUseInUnitTest):
        socket.create_connection(("127.0.0.1", 4222), timeout=0.1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as raw, pytest.raises(NetworkUseInUnitTest):
        raw.connect(("127.0.0.1", 5432))


def test_listening_fails() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as raw, pytest.raises(NetworkUseInUnitTest):
        raw.bind(("127.0.0.1", 0))


def test_an_event_loop_still_runs() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert asyncio.run(answer()) == 42
