"""The VP8 payload descriptor: rows of what is read, rewritten, and what a hostile one does."""

from __future__ import annotations

import pytest

from sfu.core.forwarding import FORWARD, IGNORE, SKIP, SWITCH, LayeredForwarder
from sfu.core.packet import RtpPacket
from sfu.core.vp8 import IdRewriter, Vp8Descriptor, parse, rewrite

# X S | I L T | picture id 0x1234 (15 bit) | TL0PICIDX 7 | TID 2, Y
FULL = bytes((0x90, 0xE0, 0x92, 0x34, 0x07, 0xA0, 0x9D))


@pytest.mark.parametrize(
    ("payload", "valid", "picture_id", "tl0", "temporal", "sync", "begins"),
    [
        (FULL, True, 0x1234, 7, 2, True, True),
        (bytes((0x80, 0x80, 0x05, 0x00)), True, 5, -1, 0, True, False),  # 7-bit id, not a frame start
        (bytes((0x10, 0x9D)), True, -1, -1, 0, True, True),  # no extension
        (bytes((0x90, 0x20, 0x40, 0x00)), True, -1, -1, 1, False, True),  # T only: TID 1, no Y
        (FULL[:3], False, -1, -1, 0, True, True),  # truncated in the picture id
        (FULL[:6], False, 0x1234, 7, 2, True, True),  # descriptor but no payload after it
        (b"", False, -1, -1, 0, True, True),
        (bytes((0x90,)), False, -1, -1, 0, True, True),
    ],
)
def test_parse(payload: bytes, valid: bool, picture_id: int, tl0: int, temporal: int, sync: bool, begins: bool) -> None:
    d = Vp8Descriptor()
    parse(payload, d)
    assert d.valid is valid
    if valid:
        assert (d.picture_id, d.tl0, d.temporal, d.sync, d.begins_frame) == (picture_id, tl0, temporal, sync, begins)


def test_rewrite_replaces_ids_only() -> None:
    d = Vp8Descriptor()
    parse(FULL, d)
    out = rewrite(FULL, d.picture_id_offset, 0x7FFF, d.tl0_offset, 0x100 + 3)
    again = Vp8Descriptor()
    parse(out, again)
    assert (again.picture_id, again.tl0, again.temporal) == (0x7FFF, 3, 2)
    assert out[-1] == FULL[-1] and len(out) == len(FULL)


def test_id_rewriter_closes_skipped_ids_and_continues_across_a_sync() -> None:
    ids = IdRewriter(15)
    ids.continue_from(0x7FFE)
    assert ids.identity
    assert ids.map(0x7FFF) == 0x7FFF
    ids.skip(0)  # a dropped frame
    assert ids.map(1) == 0  # wraps, without a hole
    ids.sync()
    assert ids.map(500) == 1  # another stream: continues from the last id sent
    assert ids.map(499) == 0  # an older packet keeps its distance (a retransmission)


def packet(
    spatial: int, temporal: int = 0, keyframe: bool = False, sync: bool = True, begins: bool = True
) -> RtpPacket:
    p = RtpPacket(b"\x80\x60" + bytes(10), b"", 1, 1, 0, keyframe, 0x7F, b"\x00\x00\x00")
    p.spatial, p.temporal, p.sync, p.begins_frame = spatial, temporal, sync, begins
    return p


def test_forwarder_rows() -> None:
    f = LayeredForwarder()
    assert f.decide(packet(0)) == IGNORE  # nothing before a keyframe
    assert f.decide(packet(0, keyframe=True)) == SWITCH
    assert f.decide(packet(1, keyframe=True)) == IGNORE  # not the target
    f.target = 1
    assert f.listens_to() == (0, 1)
    assert f.decide(packet(0, temporal=2)) == FORWARD  # the current layer goes on until the switch
    assert f.decide(packet(1)) == IGNORE  # a delta frame of the target cannot start it
    assert f.decide(packet(1, keyframe=True)) == SWITCH
    assert f.listens_to() == (1,)
    f.target_temporal = 0
    assert f.decide(packet(1, temporal=2, begins=False)) == FORWARD  # lowered at a frame start only
    assert f.decide(packet(1, temporal=2)) == SKIP
    assert f.decide(packet(1, temporal=0)) == FORWARD
    f.target_temporal = 2
    assert f.decide(packet(1, temporal=2, sync=False)) == SKIP  # not a switch point
    assert f.decide(packet(1, temporal=2, begins=False)) == SKIP
    assert f.decide(packet(1, temporal=2)) == FORWARD  # a sync frame: TL2 again
    f.pause()
    assert f.listens_to() == ()
