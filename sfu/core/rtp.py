"""Just enough RTP parsing for forwarding: header fields, extensions, keyframe detection.

The forwarder never decodes media: it reads the fixed header, finds the payload and a few
header extensions, and peeks at the first payload bytes to tell a keyframe.
"""

from __future__ import annotations

import struct

RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, seq, timestamp, ssrc
RTP_MAX_SIZE = 1500
ONE_BYTE_PROFILE = 0xBEDE
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def header_length(data: bytes) -> int:
    """Offset of the payload, or -1 if the header is malformed."""
    size = len(data)
    if size < 12 or data[0] >> 6 != 2:
        return -1
    offset = 12 + (data[0] & 0x0F) * 4
    if data[0] & 0x10:
        if offset + 4 > size:
            return -1
        offset += 4 + ((data[offset + 2] << 8) | data[offset + 3]) * 4
    if offset > size:
        return -1
    if data[0] & 0x20:  # padding: the last byte counts it, and it must fit in the payload
        if size == offset or data[size - 1] > size - offset:
            return -1
    return offset


def find_extension(data: bytes, ext_id: int) -> int:
    """Offset of the value of one-byte or two-byte header extension `ext_id`, or -1."""
    if not data[0] & 0x10 or ext_id <= 0:
        return -1
    start = 12 + (data[0] & 0x0F) * 4
    profile = (data[start] << 8) | data[start + 1]
    pos = start + 4
    end = pos + ((data[start + 2] << 8) | data[start + 3]) * 4
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            byte = data[pos]
            if byte == 0:  # padding
                pos += 1
                continue
            ident = byte >> 4
            if ident == 15:
                return -1
            if ident == ext_id:
                return pos + 1 if pos + 2 + (byte & 0x0F) <= end else -1
            pos += 2 + (byte & 0x0F)
    elif profile & 0xFFF0 == 0x1000:
        while pos + 1 < end:
            ident = data[pos]
            if ident == 0:
                pos += 1
                continue
            if ident == ext_id:
                return pos + 2 if pos + 2 + data[pos + 1] <= end else -1
            pos += 2 + data[pos + 1]
    return -1


def read_mid(data: bytes, ext_id: int) -> str | None:
    """The mid carried in a packet, used to bind an SSRC the SDP did not announce."""
    offset = find_extension(data, ext_id)
    if offset < 0:
        return None
    start = 12 + (data[0] & 0x0F) * 4
    if (data[start] << 8) | data[start + 1] == ONE_BYTE_PROFILE:
        length = (data[offset - 1] & 0x0F) + 1
    else:
        length = data[offset - 1]
    try:
        return bytes(data[offset : offset + length]).decode("ascii")
    except UnicodeDecodeError:
        return None


def is_vp8_keyframe(payload: bytes, offset: int) -> bool:
    """True for the first packet of a VP8 keyframe (RFC 7741)."""
    size = len(payload)
    if offset >= size:
        return False
    desc = payload[offset]
    if not desc & 0x10 or desc & 0x07:  # S bit set, partition index 0
        return False
    pos = offset + 1
    if desc & 0x80:  # X: extension byte follows
        if pos >= size:
            return False
        ext = payload[pos]
        pos += 1
        if ext & 0x80:  # I: picture id, one or two bytes
            if pos >= size:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    return pos < size and not payload[pos] & 0x01


_H264_KEY_NALS = (5, 7)  # IDR slice, sequence parameter set


def is_h264_keyframe(payload: bytes, offset: int) -> bool:
    """True when the packet starts an IDR picture or carries an SPS (RFC 6184)."""
    size = len(payload)
    if offset >= size:
        return False
    nal = payload[offset] & 0x1F
    if nal in _H264_KEY_NALS:
        return True
    if nal == 24:  # STAP-A: walk the aggregated units
        pos = offset + 1
        while pos + 2 < size:
            length = (payload[pos] << 8) | payload[pos + 1]
            if payload[pos + 2] & 0x1F in _H264_KEY_NALS:
                return True
            pos += 2 + length
        return False
    if nal == 28 and offset + 1 < size:  # FU-A: start fragment of a key NAL
        fu = payload[offset + 1]
        return bool(fu & 0x80) and fu & 0x1F in _H264_KEY_NALS
    return False
