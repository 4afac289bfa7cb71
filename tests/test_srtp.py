"""The adapter's SRTP protector produces what a standard libsrtp receiver accepts."""

from __future__ import annotations

import pylibsrtp
import pytest

from sfu.adapter.srtp import MAX_PACKET, SrtpProtector

KEY = bytes(range(30))


def session(direction: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=direction))


def test_protected_rtp_and_rtcp_round_trip() -> None:
    protector = SrtpProtector(session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    receiver = session(pylibsrtp.Policy.SSRC_ANY_INBOUND)
    for seq in range(50):
        packet = bytes([0x80, 96, 0, seq]) + bytes(8) + bytes(range(seq, seq + 100))
        protected = protector.protect(packet)
        assert protected != packet
        assert receiver.unprotect(protected) == packet
    report = bytes([0x80, 200, 0, 6]) + bytes(24)
    assert receiver.unprotect_rtcp(protector.protect_rtcp(report)) == report


def test_oversized_and_replayed_packets_raise() -> None:
    protector = SrtpProtector(session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    with pytest.raises(ValueError):
        protector.protect(bytes([0x80, 96]) + bytes(MAX_PACKET))
    packet = bytes([0x80, 96, 0, 1]) + bytes(20)
    protector.protect(packet)
    with pytest.raises(pylibsrtp.Error):
        protector.protect(packet)  # the same index twice: libsrtp refuses to reuse a keystream
