"""The browser client, served as static files by the signaling server."""
