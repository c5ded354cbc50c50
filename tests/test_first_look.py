"""What a first look shows (issue 21 §5): the leaderboard's points and CIs on an axis fitted to the
data (not from zero), one colour per entry on every chart, the Launch page's unfit algorithms
folded into a collapsed list with their reasons."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from metabench.dashboard import charts, data

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _board() -> pd.DataFrame:
    """Two entries 1.7 points apart, the better one with a published number, as the query returns them."""
    return pd.DataFrame({
        "variant": ["protonet", "maml"], "algorithm": ["protonet", "maml"], "family": ["metric", "optimization"],
        "metric": "accuracy", "mean": [0.981, 0.964], "ci95": [0.003, 0.004],
        "ci_low": [0.978, 0.960], "ci_high": [0.984, 0.968], "std_seeds": float("nan"), "n_seeds": 1,
        "n_tasks": 600, "published": [0.988, float("nan")], "published_ci95": [0.004, float("nan")],
        "published_source": ["Snell et al. 2017, Table 1", None],
    })  # fmt: skip


def _walk(spec):
    if isinstance(spec, dict):
        yield spec
        for v in spec.values():
            yield from _walk(v)
    elif isinstance(spec, list):
        for v in spec:
            yield from _walk(v)


def _colors(chart) -> dict[str, str]:
    """entry -> colour, from every colour scale with an explicit domain in the chart's spec."""
    out: dict[str, str] = {}
    for node in _walk(chart.to_dict()):
        scale = node.get("color", {}).get("scale", {}) if isinstance(node.get("color"), dict) else {}
        if "domain" in scale and "range" in scale:
            for name, colour in zip(scale["domain"], scale["range"]):
                assert out.setdefault(name, colour) == colour
    return out


def test_the_leaderboard_shows_points_on_an_axis_fitted_to_the_cis():
    spec = charts.leaderboard_chart(_board()).to_dict()
    marks = {(layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]) for layer in spec["layer"]}
    assert "bar" not in marks and {"rule", "point"} <= marks
    domains = [n["scale"]["domain"] for n in _walk(spec) if isinstance(n.get("scale"), dict) and "domain" in n["scale"]
               and n.get("field") in ("ci_low", "mean", "published")]  # fmt: skip
    assert domains and all(d == domains[0] for d in domains)
    low, high = domains[0]
    assert 94 < low <= 96.0 and 98.8 + 0.4 <= high <= 100   # CIs (and the published 98.8 ± 0.4) inside, not from 0
    assert any(n.get("shape") == "diamond" for n in _walk(spec))   # the published number's marker


def test_an_entry_has_one_colour_on_every_chart():
    board = _board()
    profile = pd.DataFrame({"entry": ["maml", "maml", "rl2", "rl2"], "tau": [0, 1, 0, 1], "fraction": [1, 0, 1, 0]})
    curves = pd.DataFrame({"variant": ["zzz-plugin", "maml"], "algorithm": ["zzz-plugin", "maml"], "step": [1, 1],
                           "mean": [0.5, 0.6], "ci_low": [0.4, 0.5], "ci_high": [0.6, 0.7], "n_seeds": [1, 1]})
    a = _colors(charts.leaderboard_chart(board))
    b = _colors(charts.profile_chart(profile))
    c = _colors(charts.curves_chart(curves, "accuracy"))
    assert a["maml"] == b["maml"] == c["maml"] == charts.BUILTIN_COLORS["maml"]
    assert a["protonet"] != a["maml"] and b["rl2"] != b["maml"]
    assert c["zzz-plugin"] == charts.entry_colors(["zzz-plugin"])[0]   # not a built-in: by a hash of its name


def test_every_builtin_algorithm_has_its_own_colour():
    from metabench.algorithms import ALGORITHMS

    builtin = {n for n in ALGORITHMS.names() if ALGORITHMS.origin(n) == "built-in"}
    assert builtin <= set(charts.BUILTIN_COLORS), f"add {sorted(builtin - set(charts.BUILTIN_COLORS))} to BUILTIN_COLORS"
    assert len(set(charts.BUILTIN_COLORS.values())) == len(charts.BUILTIN_COLORS)


def test_the_launch_page_folds_the_unfit_algorithms_into_a_collapsed_list(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    for k in ("METABENCH_READONLY", "METABENCH_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/launch.py").run()
    assert not at.exception, at.exception
    folded = [e for e in at.expander if e.label.endswith("do not fit the chosen suites")]
    assert len(folded) == 1 and not folded[0].proto.expanded
    listed = "\n".join(m.value for m in folded[0].markdown)
    assert "**protonet** handles classification tasks; sinusoid-5shot is regression" in listed
    assert "**rl2** handles rl-continuous, rl-discrete tasks" in listed
    assert folded[0].label.startswith(f"{listed.count('- **')} algorithm(s)")
    outside = [m.value for m in at.markdown if m not in folded[0].markdown]
    assert not any("~~" in v or "**protonet**" in v for v in outside)   # nothing struck through above the form
