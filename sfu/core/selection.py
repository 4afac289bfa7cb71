"""Which videos one subscriber receives (last-N): a pure choice over the class's video tracks.

The room calls it whenever a view, a track or the speakers change, and pauses or resumes the
subscriber's consumers to match. Rules (docs/protocol.md, "Which videos a participant receives"):
order the tracks by priority — screen shares, teachers' cameras, the pinned participant, cameras
by how recently their owner spoke, the rest — keep those on screen, only screen shares in
audio-only mode, and take the first N.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SCREEN = "screen"
TEACHER = "teacher"


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """A published video track as the choice sees it: the owner's data, never parsed from an id."""

    track_id: str
    owner: str
    role: str  # "teacher" or "student"
    source: str  # "camera" or "screen"


@dataclass(frozen=True, slots=True)
class View:
    """What a subscriber's page draws: track id -> (width, height) in css pixels."""

    tiles: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    pinned: str | None = None
    audio_only: bool = False


def _rank(track: VideoTrack, pinned: str | None, recency: Mapping[str, int], order: int) -> tuple[int, int]:
    if track.source == SCREEN:
        return (0, order)
    if track.role == TEACHER:
        return (1, order)
    if pinned is not None and track.owner == pinned:
        return (2, order)
    spoke = recency.get(track.owner)
    if spoke is not None:
        return (3, spoke)
    return (4, order)


def choose_videos(
    tracks: Sequence[VideoTrack], view: View | None, speakers: Sequence[str], last_n: int, subscriber: str = ""
) -> tuple[str, ...]:
    """The track ids to send this subscriber, in priority order.

    `tracks` in publication order; `view` None before the subscriber sent one (everything is then
    visible); `speakers` the recent speakers' participant ids, most recent first; `last_n` 0 for
    no limit. The subscriber's own tracks are never chosen.
    """
    recency: dict[str, int] = {}
    for index, owner in enumerate(speakers):
        recency.setdefault(owner, index)
    pinned = view.pinned if view is not None else None
    ranked = sorted(
        (_rank(track, pinned, recency, order), track.track_id)
        for order, track in enumerate(tracks)
        if track.owner != subscriber
        and (view is None or track.track_id in view.tiles)
        and (view is None or not view.audio_only or track.source == SCREEN)
    )
    chosen = tuple(track_id for _, track_id in ranked)
    return chosen[:last_n] if last_n > 0 else chosen


def shown_large(receiving: Iterable[str], view: View | None, large_width: int) -> set[str]:
    """The tracks among those a subscriber receives that its page draws at least `large_width` wide.

    Before a view, every tile counts as a thumbnail.
    """
    if view is None:
        return set()
    tiles = view.tiles
    return {track_id for track_id in receiving if tiles.get(track_id, (0, 0))[0] >= large_width}
