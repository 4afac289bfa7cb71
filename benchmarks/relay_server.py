"""Baseline: aiortc's MediaRelay, which decodes the publisher's media and re-encodes it per subscriber.

This is the naive Python SFU that Classe must beat; it speaks plain HTTP offer/answer.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvloop
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

relay = MediaRelay()
published: dict[str, MediaStreamTrack] = {}
peers: set[RTCPeerConnection] = set()


async def offer(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peers.add(pc)
    if body["role"] == "publisher":
        pc.on("track", lambda track: published.__setitem__(track.kind, track))
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
    else:
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
        for kind in ("video", "audio"):
            if kind in published:
                pc.addTrack(relay.subscribe(published[kind]))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.json_response({"sdp": pc.localDescription.sdp})


def main() -> None:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/offer", offer)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
