"""Shedding media when the process cannot keep up: by priority, a step at a time.

Past one core's worth of forwarding, a process that forwards everything queues: packets wait in
the socket's receive buffer (seconds of a publisher's stream fit in it), every class's media
arrives late, and the connectivity checks queued among them go unanswered until ICE gives up.
What costs is the copies (each packet is protected and sent once per subscriber), so the way
out is fewer copies, least useful first:

1. `THUMBNAILS`: students' cameras that a page shows small;
2. `STUDENT_CAMERAS`: every student's camera;
3. `STUDENT_AUDIO`: students' screens, and students' microphones but the one speaking now;
4.-7. the teacher's camera, for a quarter of the subscribers more at each level
   (`TEACHER_CAMERA_QUARTER` ... `TEACHER_CAMERA`): in a class too big for the core, most
   students keep the teacher's face rather than all of them losing it (the teacher's screen and
   voice go on). A subscriber's quarter is fixed (`quarter`), so that the same ones wait for
   keyframes, not a new share of the class at each step.

The teacher's audio is never shed. `LoadShedder` decides the level from what the adapter measures
every `INTERVAL`: how busy the process was (CPU time over wall time) and the longest a datagram
waited in its media sockets before the process read it (a backlog in seconds, from the kernel's
arrival stamps: the added delay itself). A level is added when that wait is long and does not
shrink (the step before has had `STEP` to show its effect); one is taken back after `hold` of
calm, and `hold` doubles each time taking one back brought the overload back soon after (no
flapping between two levels).
"""

from __future__ import annotations

import enum
import zlib

from .selection import SCREEN, TEACHER, VideoTrack


class Shed(enum.IntEnum):
    NOTHING = 0
    THUMBNAILS = 1
    STUDENT_CAMERAS = 2
    STUDENT_AUDIO = 3
    TEACHER_CAMERA_QUARTER = 4
    TEACHER_CAMERA_HALF = 5
    TEACHER_CAMERA_THREE_QUARTERS = 6
    TEACHER_CAMERA = 7


INTERVAL = 0.1  # seconds between two measures
STEP = 0.3  # seconds a new level has to show its effect before another is added
BACKLOG = 0.1  # seconds of waiting datagrams from which work is piling up, if it lasts
GROWING = 3  # measures in a row of such a wait, none shrinking (a keyframe burst passes in one)
BACKLOG_HIGH = 0.3  # so long a wait that one measure of it not shrinking is enough
CALM_BACKLOG = 0.01  # at most this wait, and at most CALM_BUSY busy: calm
CALM_BUSY = 0.85
HOLD = 3.0  # seconds of calm before a level is taken back
MAX_HOLD = 60.0
RELAPSE = 10.0  # overloaded again this soon after taking a level back: hold twice as long
FORGIVE = 60.0  # this long without a relapse: hold comes back to HOLD


class LoadShedder:
    """The process's shedding level, from its load measured at a steady pace (sans-IO)."""

    def __init__(self) -> None:
        self.level = Shed.NOTHING
        self.hold = HOLD
        self.raised = 0  # how many times a level was added (metrics)
        self._backlog: float | None = None  # the last measure's
        self._growing = 0  # consecutive measures with a backlog that did not shrink
        self._changed_at = float("-inf")
        self._lowered_at = float("-inf")
        self._calm_since: float | None = None

    def observe(self, now: float, busy: float, backlog: float) -> bool:
        """One measure: `busy` the process's CPU time over the wall time since the last one,
        `backlog` the longest a datagram waited in its media sockets to be read, in seconds. True
        when the level changed."""
        overloaded = self._overloaded(backlog)
        self._backlog = backlog
        if overloaded:
            self._calm_since = None
            if self.level < Shed.TEACHER_CAMERA and now - self._changed_at >= STEP:
                if now - self._lowered_at < RELAPSE:
                    self.hold = min(self.hold * 2, MAX_HOLD)
                self.level = Shed(self.level + 1)
                self.raised += 1
                self._changed_at = now
                self._growing = 0
                return True
            return False
        calm = busy <= CALM_BUSY and backlog <= CALM_BACKLOG
        if not calm:
            self._calm_since = None
            return False
        if self._calm_since is None:
            self._calm_since = now
        if self.level == Shed.NOTHING:
            if now - max(self._lowered_at, self._changed_at) > FORGIVE:
                self.hold = HOLD
            return False
        if now - self._calm_since >= self.hold and now - self._changed_at >= self.hold:
            self.level = Shed(self.level - 1)
            self._changed_at = self._lowered_at = now
            self._calm_since = now
            return True
        return False

    def skip(self, now: float) -> bool:
        """The level just added sheds nothing more (the caller saw it): add the next at once.
        False at the last level."""
        if self.level == Shed.TEACHER_CAMERA:
            return False
        self.level = Shed(self.level + 1)
        self.raised += 1
        self._changed_at = now
        return True

    def _overloaded(self, backlog: float) -> bool:
        """Busy alone says nothing: a core 100 % busy for 100 ms may be keeping up (it batches
        more), and one at 60 % may not be (another process has the rest). A wait that shrinks
        is the last step at work: adding another would shed more than the overload (measured:
        half of the class's copies for an overload of a quarter)."""
        previous = self._backlog
        if backlog >= BACKLOG and (previous is None or backlog >= previous):
            self._growing += 1
        else:
            self._growing = 0
        return self._growing >= GROWING or (self._growing >= 1 and backlog >= BACKLOG_HIGH)


def quarter(subscriber: str) -> int:
    """The subscriber's quarter of the class (0-3), the same for the whole visit."""
    return zlib.crc32(subscriber.encode()) % 4


def keeps_video(track: VideoTrack, shown_large: bool, level: Shed, subscriber_quarter: int) -> bool:
    """Whether a video chosen for a subscriber (in `subscriber_quarter`) still goes at this level."""
    if track.role == TEACHER:
        return track.source == SCREEN or subscriber_quarter > level - Shed.TEACHER_CAMERA_QUARTER
    if track.source == SCREEN:
        return level < Shed.STUDENT_AUDIO
    if level >= Shed.STUDENT_CAMERAS:
        return False
    return level < Shed.THUMBNAILS or shown_large


def keeps_audio(role: str, speaking: bool, level: Shed) -> bool:
    """Whether an audio track (a microphone or a screen's sound) still goes at this level."""
    return role == TEACHER or level < Shed.STUDENT_AUDIO or speaking
