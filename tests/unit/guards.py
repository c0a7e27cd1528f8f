"""What the unit tier's conftest puts in place of the network."""

from __future__ import annotations

from typing import Any, NoReturn


class NetworkUseInUnitTest(RuntimeError):
    """A unit test tried to reach the network."""


def refuse_network(*_: Any, **__: Any) -> NoReturn:
    raise NetworkUseInUnitTest("the unit tier uses no network: give the code an in-memory fake instead")
