"""Kept JSON bytes: orjson's over-allocated output copied to its own size."""

from __future__ import annotations

import tracemalloc

import orjson

from services.shared.json_bytes import kept

BODY = {f"attribute_{i}": "värde " * 4 for i in range(40)}  # about 1.5 KB of JSON


def _held(make: object, count: int = 2_000) -> float:
    """Bytes held per object by ``count`` results of ``make()``."""
    assert callable(make)
    tracemalloc.start()
    try:
        results = [make() for _ in range(count)]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(results) == count
    return held / count


def test_kept_bytes_are_the_same_bytes_in_an_object_of_their_size() -> None:
    raw = orjson.dumps(BODY)
    copy = kept(raw)
    assert copy == raw
    assert copy is not raw
    assert _held(lambda: kept(orjson.dumps(BODY))) < len(raw) + 256
