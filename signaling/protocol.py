"""The signaling protocol's message codec: text in, validated messages out (docs/protocol.md).

Pure functions: the WebSocket loop decodes with `decode`, answers with `encode`, and turns a
`ProtocolError` into an `error` message without touching any state.
"""

from __future__ import annotations

import json
import re
from typing import Any

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
# A subscribe_answer has one section per track of the others in the class; aiortc writes ~1.8 KiB
# for a video section, Chrome less. Its own cap follows the class's size (max_answer_bytes).
ANSWER_SECTION_BYTES = 2048
SOURCES = ("camera", "microphone", "screen", "screen_audio")
MAX_CHAT = 2000
LOCKABLE = ("microphone", "camera", "screen", "chat")
# Teacher-only actions; `participant_id` names the target, or `all: true` for the group actions.
TARGETED_ACTIONS = ("mute", "camera_off", "allow", "stop_screen", "remove", "to_lobby", "admit", "refuse")
GROUP_ACTIONS = ("mute", "camera_off", "admit", "refuse")
MODERATION_ACTIONS = (*TARGETED_ACTIONS, "lower_hands", "lock", "lock_class", "lobby", "lock_lobby", "end")
# A `view`: the tiles a page draws now. A class page shows at most a few dozen; ids are our own short ids.
MAX_VIEW_TILES = 64
MAX_TILE_PIXELS = 16384  # css pixels, per side
MAX_ID = 128
# A trickled candidate: the `candidate` line of RTCIceCandidateInit (a browser's are under 200
# characters) and the section it belongs to.
MAX_CANDIDATE = 512
MAX_MLINE_INDEX = 65535
CONNECTIONS = ("publish", "subscribe")
RELAY_PROTOCOLS = ("udp", "tcp", "tls")
# Control characters, and the bidi embeddings, overrides and isolates that would reorder what others read.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class ProtocolError(Exception):
    """A message the server refuses; `code` is stable and documented, `message` is for humans."""

    def __init__(self, code: str, message: str, ref: Any = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.fatal = fatal


def _str(value: Any, name: str, max_len: int, ref: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ProtocolError("bad_message", f"'{name}' must be a non-empty string of at most {max_len} characters", ref)
    return value


def _tracks(value: Any, ref: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or len(value) > 8:
        raise ProtocolError("bad_message", "'tracks' must be a list of at most 8 entries", ref)
    tracks = []
    for item in value:
        if not isinstance(item, dict):
            raise ProtocolError("bad_message", "each track must be an object", ref)
        mid = _str(item.get("mid"), "mid", 16, ref)
        source = item.get("source")
        if source not in SOURCES:
            raise ProtocolError("bad_message", f"'source' must be one of {', '.join(SOURCES)}", ref)
        tracks.append({"mid": mid, "source": source})
    return tracks


def max_answer_bytes(max_participants: int, max_tracks: int) -> int:
    """The size a subscribe_answer may reach in a full class: a section for each track of the others."""
    return max(MAX_MESSAGE_BYTES, (max_participants - 1) * max_tracks * ANSWER_SECTION_BYTES)


def decode(text: str | bytes, max_answer: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Validate one client message; raises ProtocolError with a code from docs/protocol.md.

    Messages are at most 64 KiB, except a `subscribe_answer`, at most `max_answer` bytes.
    """
    if isinstance(text, bytes) or len(text) > max(MAX_MESSAGE_BYTES, max_answer):
        raise ProtocolError("bad_message", "messages are JSON text of at most 64 KiB")
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("bad_message", "not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", "a message is a JSON object")
    ref = message.get("id")
    if ref is not None and not (isinstance(ref, (int, str)) and len(str(ref)) <= 64):
        raise ProtocolError("bad_message", "'id' must be a short string or number")
    kind = message.get("type")
    if len(text) > MAX_MESSAGE_BYTES and kind != "subscribe_answer":
        raise ProtocolError("bad_message", "messages are JSON text of at most 64 KiB", ref)
    if kind == "join":
        if message.get("protocol") != PROTOCOL_VERSION:
            raise ProtocolError(
                "unsupported_version", f"this server speaks protocol {PROTOCOL_VERSION}", ref, fatal=True
            )
        return {"type": kind, "id": ref, "token": _str(message.get("token"), "token", 4096, ref)}
    if kind == "publish":
        return {
            "type": kind,
            "id": ref,
            "sdp": _str(message.get("sdp"), "sdp", MAX_MESSAGE_BYTES, ref),
            "tracks": _tracks(message.get("tracks", []), ref),
        }
    if kind == "subscribe_answer":
        return {"type": kind, "id": ref, "sdp": _str(message.get("sdp"), "sdp", max_answer, ref)}
    if kind == "unpublish":
        return {"type": kind, "id": ref, "mid": _str(message.get("mid"), "mid", 16, ref)}
    if kind in ("leave", "ping"):
        return {"type": kind, "id": ref}
    if kind == "chat":
        chat = message.get("text")
        if isinstance(chat, str):
            chat = _CONTROL.sub(lambda m: " " if m.group() in "\t\n\r" else "", chat).strip()
        if not isinstance(chat, str) or not chat or len(chat) > MAX_CHAT:
            raise ProtocolError(
                "bad_message", f"'text' must be a non-empty string of at most {MAX_CHAT} characters", ref
            )
        return {"type": kind, "id": ref, "text": chat}
    if kind == "hand":
        return {"type": kind, "id": ref, "raised": _bool(message.get("raised"), "raised", ref)}
    if kind == "media":
        source = message.get("source")
        if source not in ("microphone", "camera"):
            raise ProtocolError("bad_message", "'source' must be microphone or camera", ref)
        return {"type": kind, "id": ref, "source": source, "enabled": _bool(message.get("enabled"), "enabled", ref)}
    if kind == "moderate":
        return {"type": kind, "id": ref, **_moderation(message, ref)}
    if kind == "view":
        return {"type": kind, "id": ref, **_view(message, ref)}
    if kind == "candidate":
        connection = message.get("connection")
        if connection not in CONNECTIONS:
            raise ProtocolError("bad_message", "'connection' must be publish or subscribe", ref)
        if "candidate" not in message:
            raise ProtocolError("bad_message", "'candidate' must be an object, or null after the last one", ref)
        return {"type": kind, "id": ref, "connection": connection, "candidate": _candidate(message["candidate"], ref)}
    if kind == "relay_path":
        connection, protocol = message.get("connection"), message.get("protocol")
        if connection not in CONNECTIONS or protocol not in RELAY_PROTOCOLS:
            raise ProtocolError(
                "bad_message", "'connection' must be publish or subscribe, 'protocol' udp, tcp or tls", ref
            )
        return {"type": kind, "id": ref, "connection": connection, "protocol": protocol}
    raise ProtocolError("unknown_type", "unknown message type", ref)


def _bool(value: Any, name: str, ref: Any) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError("bad_message", f"'{name}' must be true or false", ref)
    return value


def _int(value: Any, name: str, ref: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TILE_PIXELS:
        raise ProtocolError("bad_message", f"'{name}' must be a whole number from 0 to {MAX_TILE_PIXELS}", ref)
    return value


def _view(message: dict[str, Any], ref: Any) -> dict[str, Any]:
    """What a page shows: the tiles (track id -> width, height), the pinned participant, data saver.

    A track id named twice keeps its largest size; unknown ids are the room's business (ignored there).
    """
    tiles = message.get("tiles")
    if not isinstance(tiles, list) or len(tiles) > MAX_VIEW_TILES:
        raise ProtocolError("bad_message", f"'tiles' must be a list of at most {MAX_VIEW_TILES} tiles", ref)
    sizes: dict[str, tuple[int, int]] = {}
    for tile in tiles:
        if not isinstance(tile, dict):
            raise ProtocolError("bad_message", "each tile must be an object", ref)
        track_id = _str(tile.get("track_id"), "track_id", MAX_ID, ref)
        width, height = _int(tile.get("width"), "width", ref), _int(tile.get("height"), "height", ref)
        old = sizes.get(track_id, (0, 0))
        sizes[track_id] = (max(width, old[0]), max(height, old[1]))
    pinned = message.get("pinned")
    if pinned is not None:
        pinned = _str(pinned, "pinned", MAX_ID, ref)
    return {"tiles": sizes, "pinned": pinned, "audio_only": _bool(message.get("audio_only", False), "audio_only", ref)}


def _candidate(value: Any, ref: Any) -> dict[str, Any] | None:
    """RTCIceCandidateInit's fields the server uses; None for the end of candidates (null, or an
    empty `candidate`, as for RTCPeerConnection.addIceCandidate). The line itself is read later."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("bad_message", "'candidate' must be an object, or null after the last one", ref)
    line = value.get("candidate")
    if not isinstance(line, str) or len(line) > MAX_CANDIDATE:
        raise ProtocolError("bad_message", f"'candidate.candidate' must be at most {MAX_CANDIDATE} characters", ref)
    if not line:
        return None
    mid = value.get("sdpMid")
    if mid is not None:
        mid = _str(mid, "sdpMid", 16, ref)
    index = value.get("sdpMLineIndex")
    whole = isinstance(index, int) and not isinstance(index, bool)
    if index is not None and not (whole and 0 <= index <= MAX_MLINE_INDEX):
        raise ProtocolError("bad_message", f"'sdpMLineIndex' must be a whole number from 0 to {MAX_MLINE_INDEX}", ref)
    if mid is None and index is None:
        raise ProtocolError("bad_message", "a candidate names its section: 'sdpMid' or 'sdpMLineIndex'", ref)
    return {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index}


def _moderation(message: dict[str, Any], ref: Any) -> dict[str, Any]:
    action = message.get("action")
    if action not in MODERATION_ACTIONS:
        raise ProtocolError("bad_message", f"'action' must be one of {', '.join(MODERATION_ACTIONS)}", ref)
    if action in TARGETED_ACTIONS:
        if action in GROUP_ACTIONS and message.get("all") is True:
            return {"action": action, "participant_id": None}
        target = {"action": action, "participant_id": _str(message.get("participant_id"), "participant_id", 64, ref)}
        if action == "allow":
            if message.get("source") not in ("microphone", "camera", "screen"):
                raise ProtocolError("bad_message", "'source' must be microphone, camera or screen", ref)
            target["source"] = message["source"]
        return target
    if action in ("lock_class", "lobby", "lock_lobby"):
        return {"action": action, "value": _bool(message.get("value"), "value", ref)}
    if action == "lock":
        locks = message.get("locks")
        if not isinstance(locks, dict) or not locks or any(k not in LOCKABLE for k in locks):
            raise ProtocolError("bad_message", f"'locks' must map some of {', '.join(LOCKABLE)} to true or false", ref)
        return {"action": action, "locks": {k: _bool(v, k, ref) for k, v in locks.items()}}
    return {"action": action}


def encode(message_type: str, /, **fields: Any) -> str:
    return json.dumps(
        {"type": message_type, **{k: v for k, v in fields.items() if v is not None}}, separators=(",", ":")
    )


def error(exc: ProtocolError) -> str:
    return encode("error", code=exc.code, message=exc.message, ref=exc.ref, fatal=exc.fatal or None)
