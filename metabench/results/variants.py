"""Variants as the results show them (issue 20): an algorithm plus its overrides of a preset.

``runs.variant`` holds the entry label (``maml[inner_steps=3]``, ``metabench.spec.variant_label``)
and ``runs.overrides`` the JSON of ``Cell.overrides``: ``{"config": {field: value}, "loop":
{field: value}}``, only the fields that differ from the preset. ``changes_text`` turns the JSON
into what a leaderboard's ``changes`` column shows: ``inner_steps=3, loop.meta_steps=4``.
"""

from __future__ import annotations

import json
from typing import Any

from metabench.overrides import LOOP_TARGET, format_value


def parse_overrides(text: Any) -> dict[str, dict[str, Any]]:
    """``runs.overrides`` (JSON text, or None / '' / NaN for none) as a dict; unreadable text as
    ``{"?": text}`` so that a damaged value still shows rather than passing as 'no overrides'."""
    if text is None or (isinstance(text, float) and text != text) or text == "":
        return {}
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"?": {"overrides": str(text)}}
    return value if isinstance(value, dict) else {"?": {"overrides": str(text)}}


def changes_text(overrides: Any) -> str:
    """The overrides of a run as a reader sees them: config fields first, then loop settings
    (``loop.`` prefix), each sorted, joined by ', '; '' when there are none.

    >>> changes_text('{"config": {"inner_steps": 3}, "loop": {"meta_steps": 4}}')
    'inner_steps=3, loop.meta_steps=4'
    """
    parsed = parse_overrides(overrides)
    parts = [f"{k}={format_value(v)}" for k, v in sorted((parsed.get("config") or {}).items())]
    parts += [f"{LOOP_TARGET}.{k}={format_value(v)}" for k, v in sorted((parsed.get("loop") or {}).items())]
    for target in sorted(set(parsed) - {"config", "loop"}):  # a key a newer metabench may add
        parts += [f"{target}.{k}={format_value(v)}" for k, v in sorted((parsed[target] or {}).items())]
    return ", ".join(parts)


def is_plain(variant: Any, algorithm: Any) -> bool:
    """Whether a row is the algorithm's preset itself (no overrides): its variant label is the
    plain algorithm name (``variant_label`` adds brackets whenever there is an override)."""
    return variant is None or (isinstance(variant, float) and variant != variant) or variant == algorithm
