"""The `classe` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import uvloop
from aiohttp import web

from .app import create_app
from .config import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="classe", description="Classe virtual classroom server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web, signaling and media server")
    serve.add_argument("--config", type=Path, help="TOML settings file (see README)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    overrides = {
        k: v for k, v in (("config_file", args.config), ("host", args.host), ("port", args.port)) if v is not None
    }
    settings = Settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aioice and aiortc log candidate addresses at INFO: participants' IP addresses stay out of the logs.
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    logging.getLogger("classe").info(
        "serving on http://%s:%d, media on UDP %s:%d-%d",
        settings.host,
        settings.port,
        ",".join(settings.media_addresses),
        settings.media_port_min,
        settings.media_port_max,
    )
    # No access log: it would record participants' IP addresses (personal data under the GDPR).
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
