"""Classe's signaling and web server: WebSocket protocol, join tokens, classes, the aiohttp app."""
