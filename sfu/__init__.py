"""Classe's selective forwarding unit: a sans-IO media core and its asyncio adapter."""
