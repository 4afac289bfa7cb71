"""Who speaks: the K loudest audio tracks of a class, from the audio level each packet carries.

Sans-IO like the rest of the core: fed `observe(producer_id, level, now)` for every audio packet
(RFC 6464: 0 is the loudest, 127 silence; bit 7 the voice activity flag) and asked
`evaluate(now)` at the deadline `due()` gives. Levels are averaged per interval (100 ms) and
smoothed, quick to rise and slower to fall, so a click is not a speaker and a breath does not end
one. Hysteresis keeps a speaker selected `hold` (1.5 s) after going quiet, so nobody is cut
mid-word; a newcomer clearly louder than the quietest selected speaker takes its place. A student
who starts talking is selected at the first evaluation after the interval in which they spoke
(within ~200 ms), which is what lets the room forward them within 300 ms.
"""

from __future__ import annotations

SILENCE = 127
INTERVAL = 0.1  # seconds between evaluations while audio flows
HOLD = 1.5  # a speaker stays selected this long after going quiet
THRESHOLD = 60  # dBov: a smoothed level at or under this (louder than -60 dBov) is speech
MARGIN = 6  # dB a newcomer must be louder than the quietest selected speaker to replace it
ATTACK = 0.75  # smoothing weight of a new interval that is louder than the smoothed level
RELEASE = 0.35  # ... and of one that is quieter: speech falls back slower than it rises
EARLY = 0.001  # a timer may fire this much before its deadline (clock resolution): still due


class _Track:
    """The level state of one audio track; touched once per packet, so kept small."""

    __slots__ = ("count", "last_spoke", "smoothed", "total", "vad")

    def __init__(self) -> None:
        self.total = 0  # sum of this interval's levels
        self.count = 0
        self.smoothed = float(SILENCE)
        self.last_spoke = float("-inf")
        self.vad = False  # the sender sets the voice activity flag: trust it


class SpeakerDetector:
    """The K loudest speakers with hysteresis, and the active (loudest) one."""

    def __init__(
        self,
        k: int = 3,
        *,
        interval: float = INTERVAL,
        hold: float = HOLD,
        threshold: int = THRESHOLD,
        margin: int = MARGIN,
    ) -> None:
        self.k = max(1, k)
        self.interval = interval
        self.hold = hold
        self.threshold = threshold
        self.margin = margin
        self._tracks: dict[str, _Track] = {}
        self._selected: list[str] = []
        self._active: str | None = None
        self._next: float | None = None

    def observe(self, producer_id: str, level: int, now: float) -> None:
        """One audio packet's level byte (the V flag included). Called on the hot path."""
        track = self._tracks.get(producer_id)
        if track is None:
            track = self._tracks[producer_id] = _Track()
        if level & 0x80:
            track.vad = True
        elif track.vad:
            level = SILENCE  # a sender that flags voice says this packet is none
        track.total += level & 0x7F
        track.count += 1
        if self._next is None:
            self._next = now + self.interval

    def remove(self, producer_id: str) -> None:
        """A track that went: it is no longer a speaker. If it was one, evaluations are still
        running (a speaker keeps them going): the next one reports it gone."""
        self._tracks.pop(producer_id, None)

    def due(self) -> float | None:
        """When `evaluate` should run next: every interval while audio flows or a speaker is held; else None."""
        return self._next

    def evaluate(self, now: float) -> tuple[str | None, tuple[str, ...]] | None:
        """(active, loudest) if either changed since the last report, else None."""
        if self._next is None or now < self._next - EARLY:
            return None
        tracks = self._tracks
        heard = False
        for track in tracks.values():
            level = track.total / track.count if track.count else SILENCE
            heard = heard or track.count > 0
            track.smoothed += (ATTACK if level < track.smoothed else RELEASE) * (level - track.smoothed)
            track.total = track.count = 0
            if track.smoothed <= self.threshold:
                track.last_spoke = now
        selected = [p for p in self._selected if p in tracks and now - tracks[p].last_spoke < self.hold]
        speaking = sorted(
            (track.smoothed, producer_id)
            for producer_id, track in tracks.items()
            if track.last_spoke == now and producer_id not in selected
        )
        for level, producer_id in speaking:
            if len(selected) < self.k:
                selected.append(producer_id)
                continue
            quietest = max(range(len(selected)), key=lambda i: tracks[selected[i]].smoothed)
            if level + self.margin >= tracks[selected[quietest]].smoothed:
                break  # the others are quieter still
            selected[quietest] = producer_id  # takes the slot: the order of the others does not move
        active = self._choose_active(selected, now)
        self._next = now + self.interval if heard or selected else None
        if active == self._active and selected == self._selected:
            return None
        self._active = active
        self._selected = selected
        return active, tuple(selected)

    def _choose_active(self, selected: list[str], now: float) -> str | None:
        """The loudest speaking now; the current one keeps it unless another is clearly louder,
        and through a pause while it is still held."""
        tracks = self._tracks
        talking = [p for p in selected if tracks[p].last_spoke == now]
        current = self._active if self._active in selected else None
        if not talking:
            return current
        loudest = min(talking, key=lambda p: tracks[p].smoothed)
        if current is None or current == loudest:
            return loudest
        if current in talking and tracks[loudest].smoothed + self.margin >= tracks[current].smoothed:
            return current
        return loudest
