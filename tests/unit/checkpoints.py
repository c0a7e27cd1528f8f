"""Consumer positions in memory, with the rule of ``services.shared.bus.checkpoint``.

A position only moves forward: moving to a sequence at or below the recorded one is
refused (a redelivery), and the caller's transaction changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Positions:
    sequences: dict[str, int] = field(default_factory=dict)
    event_ids: dict[str, str | None] = field(default_factory=dict)
    log_positions: dict[str, int] = field(default_factory=dict)

    def can_advance(self, consumer: str, stream_sequence: int) -> bool:
        return stream_sequence > self.sequences.get(consumer, 0)

    def advance(
        self, consumer: str, stream_sequence: int, event_id: str | None, log_position: int | None = None
    ) -> bool:
        if not self.can_advance(consumer, stream_sequence):
            return False
        self.sequences[consumer] = stream_sequence
        self.event_ids[consumer] = event_id
        if log_position is not None:  # never back, as the real checkpoint
            self.log_positions[consumer] = max(log_position, self.log_positions.get(consumer, 0))
        return True

    def position(self, consumer: str) -> int:
        return self.sequences.get(consumer, 0)
