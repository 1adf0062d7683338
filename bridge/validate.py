"""Checking request values at the edge, before they reach the store, the file system or a parser that can raise.

Every helper raises `InvalidValue` (a ValueError) with a message meant for the sender, so the routes answer
4xx and nothing later sees a value SQLite cannot bind, `orjson` cannot dump or `float()` cannot divide.
"""
from __future__ import annotations

import math
import os
from typing import Any

import orjson

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_JSON_DEPTH = 64
"""Deeper than any payload a media server or a generator sends; orjson's own limit is 1024."""
MAX_TEXT_FIELD = 4096
"""Longest identity or label string (site, slug, language, provider, ...) a registration may carry."""


class InvalidValue(ValueError):
    """A request value the bridge refuses; the message names it and says what is wrong."""


def encodable(text: str) -> bool:
    """False for strings holding lone surrogates (from `\\ud800` escapes or undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json(raw: bytes | bytearray | memoryview | str, where: str = "body") -> Any:
    """Strict RFC 8259 JSON: invalid UTF-8, lone surrogates, NaN and nesting past orjson's 1024 levels are errors.

    Integers past 64 bits come back from orjson as floats; `bounded_int` and `check_storable` keep them out.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"{where} is not valid JSON: {exc}") from None
    if nested_deeper_than(value, MAX_JSON_DEPTH):
        raise InvalidValue(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Iterative, so a hostile document cannot exhaust the interpreter's stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in item)
    return False


def bounded_int(value: Any, low: int = INT64_MIN, high: int = INT64_MAX) -> int | None:
    """An int (or a float/ASCII-digit string that is one) inside [low, high]; None otherwise.

    For the parsers' lenient number fields (a webhook's season or position): an absurd value is dropped, not
    an error, because the rest of the event is still worth acting on.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 24 or not text.isascii():
            return None
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                return None
            return bounded_int(as_float, low, high)
    else:
        return None
    return number if low <= number <= high else None


def require_int(value: Any, name: str, low: int = INT64_MIN, high: int = INT64_MAX, *, digits_ok: bool = False) -> int:
    """A request field that must be an integer in range; `digits_ok` also takes an ASCII digit string."""
    if isinstance(value, str) and digits_ok:
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 19:
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{name} must be an integer")
    if not low <= value <= high:
        raise InvalidValue(f"{name} must be between {low} and {high}")
    return value


def require_number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidValue(f"{name} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue(f"{name} must be a finite number")
    if not low <= value <= high:
        raise InvalidValue(f"{name} must be between {low:g} and {high:g}")
    return float(value)


def require_text(value: Any, name: str, max_length: int = MAX_TEXT_FIELD) -> str:
    """A string that SQLite can store and a log line can show: encodable, no NUL, bounded."""
    if not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string")
    if len(value) > max_length:
        raise InvalidValue(f"{name} is longer than {max_length} characters")
    if "\x00" in value:
        raise InvalidValue(f"{name} contains a NUL character")
    if not encodable(value):
        raise InvalidValue(f"{name} is not valid Unicode (lone surrogate)")
    return value


def check_storable(value: Any, where: str = "value") -> None:
    """Raise unless `value` is JSON that orjson can dump and SQLite can bind: 64-bit ints, encodable text."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidValue(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, str):
            if not encodable(item):
                raise InvalidValue(f"{where} holds text that is not valid Unicode (lone surrogate)")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise InvalidValue(f"{where} holds an integer outside the 64-bit range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidValue(f"{where} holds a number that is not finite")
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, depth + 1))
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)


def path_limits(path: str) -> tuple[int, int]:
    """(NAME_MAX, PATH_MAX) in bytes for the file system that would hold `path`, from its nearest existing folder."""
    folder = os.path.dirname(path) or os.sep
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def check_path_length(path: str, name: str = "path") -> None:
    """Refuse a path the file system could never create: a component over NAME_MAX or the whole over PATH_MAX."""
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{name} is not valid Unicode (lone surrogate)") from None
    name_max, path_max = path_limits(path)
    if len(encoded) >= path_max:
        raise InvalidValue(f"{name} is {len(encoded)} bytes long; this file system allows less than {path_max}")
    for part in encoded.split(b"/"):
        if len(part) > name_max:
            raise InvalidValue(
                f"{name} has a component of {len(part)} bytes; this file system allows at most {name_max}")


def finite_number(value: Any) -> float | None:
    """A position-like number: an int within 64 bits or a finite float (not a bool, not a string); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, float) and math.isfinite(value) and INT64_MIN <= value <= INT64_MAX:
        return value
    return None
