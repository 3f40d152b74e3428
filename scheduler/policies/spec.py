"""Policy specs: a registry name with constructor options, as one command-line word.

``lookahead:latency_target=0.5:shed=drop`` is ``make_policy("lookahead", latency_target=0.5,
shed="drop")``. A value is read as JSON when it parses (numbers, ``true``/``false``, ``null``,
lists, objects), else taken as a string, so ``shed=drop`` needs no quotes on a shell line.
"""

from __future__ import annotations

import json
import re
from typing import Any

# A colon starts an option only before "key=", so JSON values may hold colons ({"A": 0.7}).
SEPARATOR = re.compile(r":(?=\s*[^\W\d]\w*\s*=)|:$")


def parse_policy_spec(text: str) -> tuple[str, dict[str, Any]]:
    """(registry name, options) of ``name[:key=value]...``; a ValueError names what is malformed."""
    name, *parts = SEPARATOR.split(text.strip())
    name, colon, stray = name.partition(":")
    if not name:
        raise ValueError(f"policy spec {text!r} has no policy name (expected name[:key=value]...)")
    if colon:
        raise ValueError(f"policy spec {text!r}: {stray!r} is not key=value")
    return name, _options(parts, f"policy spec {text!r}")


def parse_options(text: str) -> dict[str, Any]:
    """``key=value[:key=value]...`` (values as in a policy spec) as a dict; empty text is no options."""
    return _options(SEPARATOR.split(text.strip()), f"options {text!r}") if text.strip() else {}


def _options(parts: list[str], what: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ValueError(f"{what}: {part!r} is not key=value")
        if key in options:
            raise ValueError(f"{what} sets {key!r} twice")
        options[key] = _value(value.strip())
    return options


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def worker_policy_args(text: str) -> dict[str, Any]:
    """The serving config's ``policy`` (and, when the spec has options, ``policy_options``) for a spec."""
    name, options = parse_policy_spec(text)
    return {"policy": name, **({"policy_options": options} if options else {})}
