"""Which tools some worker serves right now, from their announcements."""

from __future__ import annotations

import time

from ossabus.contracts.tools import ToolAnnouncement


class ToolDirectory:
    def __init__(self) -> None:
        self._seen: dict[str, tuple[ToolAnnouncement, float]] = {}

    def saw(self, note: ToolAnnouncement) -> None:
        self._seen[note.name] = (note, time.monotonic())

    def serves(self, name: str) -> bool:
        """True while a worker announced `name` within twice its announcement interval."""
        found = self._seen.get(name)
        return found is not None and time.monotonic() - found[1] <= 2 * found[0].every_s

    def live(self) -> list[ToolAnnouncement]:
        return [note for name, (note, _) in sorted(self._seen.items()) if self.serves(name)]
