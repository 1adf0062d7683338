"""Stable links: `/play/{id}?sig=…` in a `.strm` resolves at play time, by redirect or through the bridge.

Modules: `signing` (HMAC of the id, rotation), `locate` (which URL now, re-resolving through the refresh
pipeline), `proxy` (streaming with Range and one retry), `hls` (playlist rewriting), `service` (the routes).
Nothing is imported here, so `bridge.refresh` can use `signing` without importing the routes.
"""
