"""The HTTP API used by the browser client: accounts, classes, joining, problem reports."""

from .context import Services, setup_api

__all__ = ["Services", "setup_api"]
