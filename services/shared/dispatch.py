"""Dispatch by contract type: one table per consumer, its handlers and the types it ignores.

Every consumer of an event family (the case events, the meeting events) declares, in one
:class:`EventHandlers` table, a handler for each type it reacts to and, by name, the
types it deliberately ignores. There is no silent default:

- at run time, a type the table neither handles nor ignores raises :class:`UnhandledEvent`
  (the consumer retries, then dead-letters the event with that reason), so a forgotten
  handler never leaves a state quietly wrong;
- at test time, :func:`uncovered` lists those types for every table (the event-coverage
  test), so a contract type added without deciding what each consumer does fails before
  it ships.

Types the contracts do not know never reach a table: the consumers' decoding dead-letters
them first.

Pure (no I/O): the case aggregate's domain uses it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, get_type_hints

H = TypeVar("H")


class ContractEvent(Protocol):
    """An event model of the contracts: its stable, versioned type name."""

    TYPE: ClassVar[str]


class UnhandledEvent(LookupError):
    """A consumer was given a type its table neither handles nor ignores."""

    def __init__(self, consumer: str, type_name: str) -> None:
        super().__init__(
            f"{consumer} neither handles nor ignores {type_name}:"
            " add a handler to its table, or name the type among its ignored ones"
        )
        self.consumer = consumer
        self.type_name = type_name


@dataclass(frozen=True, slots=True)
class EventHandlers(Generic[H]):
    """One consumer's table: handler per contract type name, and the types it ignores."""

    consumer: str  # who consumes, for errors and the coverage test ("notifications: case events")
    family: tuple[str, ...]  # every type name of the family the consumer is given
    handlers: Mapping[str, H]
    ignored: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls,
        consumer: str,
        family: Iterable[type[ContractEvent]],
        handlers: Mapping[type[ContractEvent], H],
        *,
        ignored: Iterable[type[ContractEvent]] = (),
    ) -> EventHandlers[H]:
        return cls(
            consumer,
            tuple(t.TYPE for t in family),
            {t.TYPE: handler for t, handler in handlers.items()},
            frozenset(t.TYPE for t in ignored),
        )

    @classmethod
    def of_signatures(
        cls,
        consumer: str,
        family: Iterable[type[ContractEvent]],
        handlers: Iterable[H],
        *,
        ignored: Iterable[type[ContractEvent]] = (),
    ) -> EventHandlers[H]:
        """:meth:`of`, each handler under the one type of ``family`` its signature takes: the
        table cannot name one type and hand its handler another."""
        members = tuple(family)
        table: dict[type[ContractEvent], H] = {}
        for handler in handlers:
            handled = _handled_type(handler, members)
            if handled in table:
                raise ValueError(f"{consumer}: two handlers of {handled.TYPE}")
            table[handled] = handler
        return cls.of(consumer, members, table, ignored=ignored)

    def __post_init__(self) -> None:
        both = self.ignored & self.handlers.keys()
        if both:
            raise ValueError(f"{self.consumer}: both handled and ignored: {sorted(both)}")
        foreign = (self.ignored | self.handlers.keys()) - set(self.family)
        if foreign:
            raise ValueError(f"{self.consumer}: not types of its family: {sorted(foreign)}")

    def handler(self, type_name: str) -> H | None:
        """The handler of ``type_name``; None if the type is ignored; raises if neither."""
        handler = self.handlers.get(type_name)
        if handler is not None:
            return handler
        if type_name in self.ignored:
            return None
        raise UnhandledEvent(self.consumer, type_name)

    def without(self, type_name: str) -> EventHandlers[H]:
        """A copy with the handler of ``type_name`` removed (what a forgotten handler looks like)."""
        handlers = {t: h for t, h in self.handlers.items() if t != type_name}
        return EventHandlers(self.consumer, self.family, handlers, self.ignored - {type_name})


def _handled_type(handler: object, family: Sequence[type[ContractEvent]]) -> type[ContractEvent]:
    """The one type of ``family`` among the types of ``handler``'s parameters."""
    hints = get_type_hints(handler)
    hints.pop("return", None)
    found = [t for t in hints.values() if t in family]
    if len(found) != 1:
        name = getattr(handler, "__qualname__", repr(handler))
        raise ValueError(f"{name} takes {len(found)} types of its family, not one")
    handled: type[ContractEvent] = found[0]
    return handled


def uncovered(table: EventHandlers[Any]) -> list[str]:
    """The types of the table's family it neither handles nor ignores (empty: complete)."""
    return [t for t in table.family if t not in table.handlers and t not in table.ignored]
