"""Pre-encoded media for the load generator: encode once, replay cheaply.

A publisher that encodes live would spend the client machine's CPU on libvpx; replaying packets
keeps the clients cheap, so what is measured is the server.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

VIDEO_FPS = 30
AUDIO_PTIME = 0.02


@dataclass(frozen=True)
class EncodedFrame:
    payloads: tuple[bytes, ...]
    timestamp_step: int  # RTP clock ticks to the next frame


def encode_video(
    seconds: float = 4.0, bitrate: int = 1_000_000, width: int = 640, height: int = 360
) -> list[EncodedFrame]:
    """VP8 frames of a moving pattern, one keyframe per second, at about `bitrate`."""
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    encoder = get_encoder(codec)
    encoder.target_bitrate = bitrate  # type: ignore[attr-defined]
    rng = np.random.default_rng(1)
    base = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    base[:height] = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
    base[:height] ^= rng.integers(0, 24, (height, width), dtype=np.uint8)  # some texture
    frames = []
    for i in range(int(seconds * VIDEO_FPS)):
        img = np.roll(base, i * 6, axis=1)
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=i % VIDEO_FPS == 0)
        frames.append(EncodedFrame(tuple(payloads), 90000 // VIDEO_FPS))
    return frames


def encode_audio(seconds: float = 4.0) -> list[EncodedFrame]:
    """Opus frames of a tone, 20 ms each."""
    codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    encoder = get_encoder(codec)
    samples = int(48000 * AUDIO_PTIME)
    frames = []
    for i in range(int(seconds / AUDIO_PTIME)):
        t = (np.arange(samples) + i * samples) / 48000
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * samples, fractions.Fraction(1, 48000)
        payloads, _ = encoder.encode(frame)
        frames.append(EncodedFrame(tuple(payloads), samples))
    return frames
