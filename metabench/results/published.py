"""Published numbers, to show beside ours (no torch, no Streamlit).

The table is ``published.csv`` in this package: one published number per row, with the paper, the
table it comes from, the protocol (split, transductive or not, architecture) and how it was
checked (``check``: P = read in the paper or a paper table quoting it; S = a secondary source,
named in ``source``). Values are in metabench's units (accuracy as a fraction).

A published number is shown beside a leaderboard row only when the protocol matches: same suite,
same split scheme, same ``transductive`` flag and the same algorithm name (``attach_published``),
and only to a plain row: a variant with overrides of its preset (``maml[inner_steps=3]``) is not
the paper's setting, so it never gets the paper's number.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

from metabench.results.variants import is_plain

#: Columns of ``published_for``, in order.
PUBLISHED_COLUMNS = ["suite", "split_scheme", "algorithm", "variant", "metric", "value", "ci95", "transductive",
                     "architecture", "protocol", "citation", "source", "check"]


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    with resources.files("metabench.results").joinpath("published.csv").open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, comment="#", dtype={"variant": str}, keep_default_na=False,
                         na_values={"ci95": [""], "value": [""]})
    df["transductive"] = df["transductive"].map({"True": True, "False": False, True: True, False: False})
    df["value"] = df["value"].astype(float)
    df["ci95"] = df["ci95"].astype(float)
    return df[PUBLISHED_COLUMNS]


def published_for(suite: str | None = None, split_scheme: str | None = None) -> pd.DataFrame:
    """Published rows for ``suite`` (all suites when None), optionally of one split scheme.

    Columns: ``PUBLISHED_COLUMNS``; file order (each paper's headline variant first).
    """
    df = _table()
    if suite is not None:
        df = df[df["suite"] == suite]
    if split_scheme is not None:
        df = df[df["split_scheme"] == split_scheme]
    return df.reset_index(drop=True).copy()


@lru_cache(maxsize=64)
def _first_by_protocol(suite: str) -> dict[tuple, dict]:
    """(algorithm, split_scheme, transductive, metric) -> the first published row (file order)."""
    first: dict[tuple, dict] = {}
    for rec in published_for(suite).to_dict("records"):
        if rec["transductive"] in (True, False):  # an unreadable flag matches nothing
            first.setdefault((rec["algorithm"], rec["split_scheme"], bool(rec["transductive"]), rec["metric"]), rec)
    return first


def attach_published(board: pd.DataFrame, suite: str) -> pd.DataFrame:
    """``board`` (a leaderboard frame) with ``published``, ``published_ci95`` and ``published_source``.

    A plain row (``variant`` equal to ``algorithm``, or no ``variant`` column) gets the first
    published number with the same algorithm, split scheme, transductive flag and metric; NaN
    when the protocol of no published number matches, and for every variant with overrides.
    """
    out = board.copy()
    first = _first_by_protocol(suite)  # a dict lookup per row: pandas masks per row cost ~10 ms
    values, cis, sources = [], [], []
    for rec in out.to_dict("records"):
        plain = is_plain(rec.get("variant"), rec.get("algorithm"))
        hit = plain and first.get((rec.get("algorithm"), rec.get("split_scheme"), bool(rec.get("transductive")),
                                   rec.get("metric")))  # fmt: skip
        values.append(float(hit["value"]) if hit else float("nan"))
        cis.append(float(hit["ci95"]) if hit else float("nan"))
        sources.append(str(hit["citation"]) if hit else None)
    out["published"] = values
    out["published_ci95"] = cis
    out["published_source"] = sources
    return out
