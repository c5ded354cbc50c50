"""Published numbers, to show beside ours (no torch, no Streamlit).

The table is ``published.csv`` in this package: one published number per row, with the paper, the
table it comes from, the protocol (split, transductive or not, architecture) and how it was
checked (``check``: P = read in the paper or a paper table quoting it; S = a secondary source,
named in ``source``). A number that could not be read in any reachable source is not in the table
(MetaNet's, SimpleShot's). Values are in metabench's units (accuracy as a fraction).

Protocol columns (issue 22): a published number is shown beside a leaderboard row only when the
run's *recorded* protocol matches the paper's on every field the published row states. An empty
field means the paper (or the reference notes it was checked against) does not state it, and
then it constrains nothing:

    preset       the run's preset (every row says ``paper``: a ``quick`` run never gets a number)
    train_way    classes per training episode
    train_shot   support examples per class in training
    train_query  queries per class in training
    test_steps   inner steps at test (gradient-based learners; the run's adaptation budget)
    backbone     the network: ``conv4-pool-64``, ``conv4-strided-64``, ``conv4-pool-32``,
                 ``resnet12``, ``lstm-lrua``...; a stated ``conv4`` matches any ``conv4-...`` run
    model        a model option the number depends on, e.g. Matching Networks' ``fce`` / ``no-fce``

besides the suite, split scheme, ``transductive`` flag, algorithm and metric. The run's side is
``runs.config``'s ``protocol`` object, which the engine records from the algorithm
(``Algorithm.recorded_protocol``); a run without one (written before it was recorded) matches no
published row. And only a plain row gets a number: a variant with overrides of its preset
(``maml[inner_steps=3]``) is not the paper's setting.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd

from metabench.results.variants import is_plain

#: The protocol fields a published row may state (empty = not stated), in file order.
PROTOCOL_FIELDS = ["preset", "train_way", "train_shot", "train_query", "test_steps", "backbone", "model"]
#: Of those, the integer ones.
_INT_FIELDS = ("train_way", "train_shot", "train_query", "test_steps")
#: Columns of ``published_for``, in order.
PUBLISHED_COLUMNS = ["suite", "split_scheme", "algorithm", "variant", "metric", "value", "ci95", "transductive",
                     "architecture", "protocol", "citation", "source", "check", *PROTOCOL_FIELDS]


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    with resources.files("metabench.results").joinpath("published.csv").open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, comment="#", dtype=str, keep_default_na=False)
    df["transductive"] = df["transductive"].map({"True": True, "False": False})
    df["value"] = pd.to_numeric(df["value"]).astype(float)
    df["ci95"] = pd.to_numeric(df["ci95"].replace("", None)).astype(float)
    for name in _INT_FIELDS:   # nullable integers: <NA> = not stated
        df[name] = pd.to_numeric(df[name].replace("", None)).astype("Int64")
    return df[PUBLISHED_COLUMNS]


def published_for(suite: str | None = None, split_scheme: str | None = None) -> pd.DataFrame:
    """Published rows for ``suite`` (all suites when None), optionally of one split scheme.

    Columns: ``PUBLISHED_COLUMNS``; file order (each paper's headline variant first). The
    protocol fields are '' (text) or <NA> (integers) where the row does not state them.
    """
    df = _table()
    if suite is not None:
        df = df[df["suite"] == suite]
    if split_scheme is not None:
        df = df[df["split_scheme"] == split_scheme]
    return df.reset_index(drop=True).copy()


def run_protocol(config: Any, preset: Any = None) -> dict[str, Any] | None:
    """The protocol a run recorded: ``runs.config``'s ``protocol`` object (JSON text or a dict)
    plus its ``preset``; None when the config is unreadable or has no protocol (runs written
    before it was recorded, or a cell that failed before its algorithm was built)."""
    try:
        obj = json.loads(config) if isinstance(config, str) else config
    except (TypeError, ValueError):
        return None
    protocol = obj.get("protocol") if isinstance(obj, dict) else None
    if not isinstance(protocol, dict):
        return None
    return {**protocol, "preset": None if preset is None or pd.isna(preset) else str(preset)}


def _stated(value: Any) -> bool:
    return not (value is None or value is pd.NA or (isinstance(value, float) and value != value) or value == "")


def _backbone_matches(stated: str, recorded: Any) -> bool:
    """'conv4' matches 'conv4' and 'conv4-pool-64'; 'conv4-pool-64' matches only itself."""
    return isinstance(recorded, str) and (recorded == stated or recorded.startswith(stated + "-"))


def protocol_mismatches(published: dict[str, Any], run: dict[str, Any] | None) -> list[str]:
    """The protocol fields a published row states that the run's recorded protocol does not match
    (``PROTOCOL_FIELDS``; the run side from ``run_protocol``); every stated field when the run
    recorded none. [] = the published number applies to the run."""
    stated = [f for f in PROTOCOL_FIELDS if _stated(published.get(f))]
    if run is None:
        return stated
    out = []
    for f in stated:
        want, got = published[f], run.get(f)
        if f == "backbone":
            ok = _backbone_matches(str(want), got)
        elif f in _INT_FIELDS:
            ok = got is not None and not isinstance(got, bool) and isinstance(got, (int, float)) and int(got) == int(want)
        else:
            ok = got is not None and str(got) == str(want)
        if not ok:
            out.append(f)
    return out


@lru_cache(maxsize=64)
def _by_key(suite: str) -> dict[tuple, list[dict]]:
    """(algorithm, split_scheme, transductive, metric) -> its published rows, in file order."""
    rows: dict[tuple, list[dict]] = {}
    for rec in published_for(suite).to_dict("records"):
        if rec["transductive"] in (True, False):  # an unreadable flag matches nothing
            key = (rec["algorithm"], rec["split_scheme"], bool(rec["transductive"]), rec["metric"])
            rows.setdefault(key, []).append(rec)
    return rows


def attach_published(board: pd.DataFrame, suite: str) -> pd.DataFrame:
    """``board`` (a leaderboard frame) with ``published``, ``published_ci95`` and ``published_source``.

    A plain row (``variant`` equal to ``algorithm``, or no ``variant`` column) gets the first
    published number (file order) with the same algorithm, split scheme, transductive flag and
    metric whose stated protocol fields the row's recorded protocol matches
    (``protocol_mismatches``); ``published_source`` is its citation. The row's protocol is read from its ``config`` column (the runs'
    ``runs.config`` JSON) and ``preset``; a board without a ``config`` column has no recorded
    protocol, so it matches only published rows that state no protocol field (none do). NaN
    when nothing matches, and for every variant with overrides.
    """
    out = board.copy()
    rows = _by_key(suite)  # a dict lookup per row: pandas masks per row cost ~10 ms
    values, cis, sources = [], [], []
    for rec in out.to_dict("records"):
        hit = None
        if is_plain(rec.get("variant"), rec.get("algorithm")):
            key = (rec.get("algorithm"), rec.get("split_scheme"), bool(rec.get("transductive")), rec.get("metric"))
            run = run_protocol(rec.get("config"), rec.get("preset"))
            hit = next((p for p in rows.get(key, []) if not protocol_mismatches(p, run)), None)
        values.append(float(hit["value"]) if hit else float("nan"))
        cis.append(float(hit["ci95"]) if hit else float("nan"))
        sources.append(str(hit["citation"]) if hit else None)
    out["published"] = values
    out["published_ci95"] = cis
    out["published_source"] = sources
    return out
