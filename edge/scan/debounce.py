"""Debouncing: a code held in view is decided once, not once per frame.

A text seen now is *new* (to be decided) when it was never seen, or was out of view for at least
``forget_after_s``, or (if ``repeat_after_s`` > 0) it was last decided at least that long ago.
Times come from the caller (the Clock's monotonic), so the debouncer is pure and testable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge.config import DebounceConfig


@dataclass
class _Seen:
    last_seen: float
    decided_at: float


class Debouncer:
    """Feed each frame's texts with the frame time; get back the texts to decide now."""

    def __init__(self, forget_after_s: float = 2.0, repeat_after_s: float = 0.0, *, max_tracked: int = 256):
        if forget_after_s < 0 or repeat_after_s < 0:
            raise ValueError("debounce times must be >= 0")
        self.forget_after_s = forget_after_s
        self.repeat_after_s = repeat_after_s
        self.max_tracked = max_tracked
        self._seen: dict[str, _Seen] = {}

    @classmethod
    def from_config(cls, config: DebounceConfig) -> Debouncer:
        """A debouncer with the ``[debounce]`` settings."""
        return cls(config.forget_after_s, config.repeat_after_s)

    def feed(self, texts: Iterable[str], now: float) -> list[str]:
        """Record that ``texts`` are in view at ``now``; return those that need a decision."""
        new: list[str] = []
        for text in dict.fromkeys(texts):
            seen = self._seen.get(text)
            if seen is None or now - seen.last_seen >= self.forget_after_s or (
                    self.repeat_after_s > 0 and now - seen.decided_at >= self.repeat_after_s):
                new.append(text)
                self._seen[text] = _Seen(now, now)
            else:
                seen.last_seen = now
        self._forget(now)
        return new

    def _forget(self, now: float) -> None:
        if self.forget_after_s > 0:
            stale = [t for t, s in self._seen.items() if now - s.last_seen >= self.forget_after_s]
            for text in stale:
                del self._seen[text]
        while len(self._seen) > self.max_tracked:  # bounded memory, oldest first
            del self._seen[min(self._seen, key=lambda t: self._seen[t].last_seen)]

    def in_view(self) -> list[str]:
        """Texts currently remembered (seen within forget_after_s)."""
        return list(self._seen)
