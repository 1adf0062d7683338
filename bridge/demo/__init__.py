"""`strm-bridge demo`: the whole heal loop on loopback, with simulated provider and media server.

Nothing here is used by the service itself; the demo drives the real bridge (configuration loader, wiring,
HTTP API, webhooks, refresh pipeline) against two small simulators so a new user sees a heal in a minute.
"""
