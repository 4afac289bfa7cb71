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
    seconds: float = 4.0,
    bitrate: int = 1_000_000,
    width: int = 640,
    height: int = 360,
    fps: int = VIDEO_FPS,
    keyframe_seconds: float = 1.0,
) -> list[EncodedFrame]:
    """VP8 frames of a moving pattern at about `bitrate`, a keyframe every `keyframe_seconds`."""
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    encoder = get_encoder(codec)
    # aiortc clamps its target to at least 250 kbit/s; a thumbnail is below that, so set it directly.
    setattr(encoder, "_Vp8Encoder__target_bitrate", bitrate)  # noqa: B010
    keyframe_every = max(1, round(keyframe_seconds * fps))
    rng = np.random.default_rng(1)
    base = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    base[:height] = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
    base[:height] ^= rng.integers(0, 24, (height, width), dtype=np.uint8)  # some texture
    frames = []
    step = 90000 // fps
    for i in range(int(seconds * fps)):
        img = np.roll(base, i * 180 // fps, axis=1)  # the same motion per second at any frame rate
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts, frame.time_base = i * step, fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=i % keyframe_every == 0)
        frames.append(EncodedFrame(tuple(payloads), step))
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


def encode_voice(seconds: float = 4.0, talking: bool = True, bitrate: int = 32_000) -> list[EncodedFrame]:
    """Opus frames as a browser sends a microphone: mono, 20 ms, about `bitrate` (Chrome's 32 kbit/s).

    Talking is a tone that comes and goes with some noise (about 75-byte packets); not talking is
    a quiet room's low-level noise, still one packet every 20 ms as without DTX (about 40 bytes).
    """
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.bit_rate = bitrate
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = 48000
    codec.time_base = fractions.Fraction(1, 48000)
    codec.options = {"application": "voip"}
    samples = int(48000 * AUDIO_PTIME)
    count = int(seconds / AUDIO_PTIME)
    rng = np.random.default_rng(2 if talking else 3)
    t = np.arange(samples * count) / 48000
    if talking:
        signal = np.sin(2 * np.pi * 220 * t) * np.abs(np.sin(2 * np.pi * 2 * t)) * 6000 + rng.normal(0, 600, t.size)
    else:
        signal = rng.normal(0, 1.5, t.size)
    pcm = signal.astype(np.int16)
    frames: list[EncodedFrame] = []
    for i in range(count):
        frame = av.AudioFrame.from_ndarray(
            pcm[i * samples : (i + 1) * samples].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * samples, fractions.Fraction(1, 48000)
        frames.extend(EncodedFrame((bytes(p),), samples) for p in codec.encode(frame))
    return frames
