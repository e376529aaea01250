"""Stop sequences on streamed text: hold back what might become a stop, cut at the first one."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed it text deltas; it returns what is safe to show and says when a stop sequence appeared."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """The part of ``pending + delta`` that can be shown now."""
        if self.stopped:
            return ""
        text = self._pending + delta
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        hold = max((self._overlap(text, s) for s in self._stops), default=0)
        self._pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What was held back, once generation ended without a stop."""
        text, self._pending = self._pending, ""
        return "" if self.stopped else text

    @staticmethod
    def _overlap(text: str, stop: str) -> int:
        for size in range(min(len(text), len(stop) - 1), 0, -1):
            if stop.startswith(text[-size:]):
                return size
        return 0
