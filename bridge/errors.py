"""The one error shape every endpoint answers with: {"error": code, "detail": ...}."""
from __future__ import annotations

from typing import Any

from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


def error_response(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


def bad_request(detail: Any, error: str = "bad_request") -> ApiError:
    return ApiError(400, error, detail)
