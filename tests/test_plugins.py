"""Plugins (issue 20): `metabench check`, image-folder suites, the example package.

The example (examples/plugin) is installed by CI (`pip install -e examples/plugin`); the tests of
its entry points skip with a reason when it is not installed, while its algorithm is also tested
through an import path with no install. Two bad plugins, written below, must fail `metabench
check` with the broken rule named.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from metabench.cli import main
from metabench.conformance import RULES, run_checks
from metabench.errors import ConfigError, MetabenchError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin"

# A tiny regression algorithm (a line fitted by SGD across tasks) and two ways to break the rules.
PLUGINS = textwrap.dedent('''
    from dataclasses import dataclass

    import torch

    from metabench.algorithms import Algorithm
    from metabench.algorithms.base import TrainRequest


    @dataclass(frozen=True)
    class Config:
        lr: float = 0.05
        """SGD step size."""


    class LineFit(Algorithm):
        """y = a x + b, one (a, b) for every task: a well-behaved, if weak, plugin."""
        name, family, supports, Config = "line-fit", "test", frozenset({"regression"}), Config
        PRESETS = {"smoke": {}, "quick": {}, "paper": {}}

        def __init__(self, suite, config, device, seed):
            super().__init__(suite, config, device, seed)
            self.w = torch.zeros(2, device=self.device)

        def train_request(self):
            return TrainRequest(n_tasks=4)

        def training_batch(self, batch):
            return batch

        def meta_train_step(self, batch):
            batch = self.training_batch(batch)
            w = self.w.clone().requires_grad_(True)
            loss = ((w[0] * batch.query_x + w[1] - batch.query_y) ** 2).mean()
            loss.backward()
            self.w = (w - self.config.lr * w.grad).detach()
            return {"loss": float(loss.detach())}

        def evaluate(self, batch):
            mse = ((self.w[0] * batch.query_x + self.w[1] - batch.query_y) ** 2).mean(dim=(1, 2))
            return {"mse": mse}

        def state_dict(self):
            return {"w": self.w.clone()}

        def load_state_dict(self, state):
            self.w = state["w"].clone()

        def meta_parameters(self):
            return {"w": self.w}


    class TrainsOnTest(LineFit):
        """Breaks the rule: meta-trains on the suite's fixed test tasks."""
        name = "trains-on-test"

        def training_batch(self, batch):
            return next(self.suite.fixed_tasks("test", 4, batch_size=4))


    class Nondeterministic(LineFit):
        """Breaks the rule: noise from the global RNG (not from its seed), so two runs differ."""
        name = "nondeterministic"

        def meta_train_step(self, batch):
            out = super().meta_train_step(batch)
            self.w = self.w + 0.01 * torch.randn(2)
            return out
''')


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch) -> Path:
    """A folder holding `bad_plugins.py` (LineFit, TrainsOnTest, Nondeterministic), on sys.path."""
    (tmp_path / "bad_plugins.py").write_text(PLUGINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", **extra)
    env.pop("PYTHONPATH", None)
    return env


# --- metabench check -------------------------------------------------------------------------
def test_check_fails_a_plugin_that_trains_on_test_tasks(plugins):
    report = run_checks("bad_plugins:TrainsOnTest", "sinusoid-5shot")
    failed = {r.rule: r.detail for r in report.failed}
    assert not report.ok and set(failed) == {"no-test"}, failed
    assert "test split was touched before the test phase" in failed["no-test"]
    assert "bad_plugins.py" in failed["no-test"] and "training_batch" in failed["no-test"]


def test_check_fails_a_nondeterministic_plugin_with_the_rule_named(plugins, capsys):
    assert main(["check", "bad_plugins:Nondeterministic", "--suite", "sinusoid-5shot"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {RULES['deterministic']}: two runs with seed 0 differ" in out
    assert f"SKIP  {RULES['resume']}" in out
    assert f"1 of {len(RULES)} checks failed: {RULES['deterministic']}" in out


def test_check_passes_a_plugin_imported_from_the_current_directory(plugins):
    """The console script has no current directory on sys.path; the registry adds it (as python -m)."""
    r = subprocess.run(["metabench", "check", "bad_plugins:LineFit"], cwd=plugins, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(module bad_plugins:LineFit) on sinusoid-5shot" in r.stdout
    assert r.stdout.count("PASS") == len(RULES) and f"all {len(RULES)} checks passed" in r.stdout


def test_check_reports_a_broken_class_contract(plugins):
    (plugins / "no_config.py").write_text("from metabench.algorithms import Algorithm\n"
                                          "class NoConfig(Algorithm):\n"
                                          "    name, family, supports = 'x', 'test', frozenset({'regression'})\n")
    report = run_checks("no_config:NoConfig")
    assert [r.ok for r in report.results] == [False] + [None] * (len(RULES) - 1)
    assert "must set the class attribute 'Config'" in report.results[0].detail


@pytest.mark.parametrize("argv, match", [
    (["check", "protonett"], "Unknown algorithm 'protonett'. Did you mean 'protonet'?"),
    (["check", "no_such_module:Algo"], "cannot import 'no_such_module'"),
    (["check", "protonet", "--suite", "sinusoid-5shot"], "protonet handles classification tasks; sinusoid-5shot is "
                                                         "regression; choose a suite it fits with --suite"),
    (["check", "maml", "--suite", "omniglot-5w1"], "Did you mean 'omniglot-5w1s'?"),
])
def test_check_bad_input_is_one_error_line_exit_2(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err, err


# --- image-folder suites ---------------------------------------------------------------------
TOML = """id = "{id}"
version = 1
way = 5
shot = 1
queries = 3
image_size = 16
channels = {channels}
images = "images"
test_tasks = 20
val_tasks = 10
[splits]
train = "train.txt"
val = "val.txt"
test = "test.txt"
"""


def make_folder(root: Path, suite_id: str = "shapes-5w1s", n_classes: int = 15, n_images: int = 6,
                channels: int = 1, ext: str = ".png") -> Path:
    """ROOT/<folder>/images/classNN/*.png (random pixels), split files 5/5/5 and the TOML."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / suite_id
    names = [f"class{c:02d}" for c in range(n_classes)]
    for c in names:
        (folder / "images" / c).mkdir(parents=True)
        for i in range(n_images):
            shape = (20, 20) if channels == 1 else (20, 20, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / "images" / c / f"{i}{ext}")
    third = n_classes // 3
    for split, part in (("train", names[:third]), ("val", names[third:2 * third]), ("test", names[2 * third:])):
        (folder / f"{split}.txt").write_text("\n".join(part) + "\n")
    (folder / "metabench-suite.toml").write_text(TOML.format(id=suite_id, channels=channels))
    return folder


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> Path:
    """A data root with the `shapes-5w1s` folder suite, registered in this process."""
    from metabench.suites import add_data_root

    root = tmp_path_factory.mktemp("data")
    make_folder(root)
    assert add_data_root(root) == []
    return root


@pytest.mark.parametrize("channels, ext", [(1, ".png"), (3, ".jpg")])
def test_folder_suite_conformance(tmp_path, channels, ext):
    from metabench.checks import check_suite
    from metabench.suites.image_folder import ImageFolderSuite

    suite = ImageFolderSuite.from_toml(make_folder(tmp_path, f"rgb{channels}", channels=channels, ext=ext))
    suite.prepare(None, "cpu", progress=False)
    check_suite(suite)
    assert suite.input_shape == (channels, 16, 16) and suite.split_scheme.startswith("files-")
    assert suite.n_classes("test") == 5 and suite.describe()["folder"].endswith("metabench-suite.toml")


def test_folder_suite_is_registered_with_its_origin(folder_root):
    from metabench.suites import SUITES, make_suite

    assert SUITES.origin("shapes-5w1s") == f"folder {(folder_root / 'shapes-5w1s' / 'metabench-suite.toml').resolve()}"
    s = make_suite("shapes-5w1s")
    assert (s.id, s.version, s.n_way, s.n_shot, s.n_query_test, s.n_test_tasks) == ("shapes-5w1s", 1, 5, 1, 3, 20)


def test_folder_suite_hash_rule(tmp_path):
    from metabench.suites.image_folder import ImageFolderSuite, load_image_folder

    folder = make_folder(tmp_path, "hashed", n_classes=40)
    toml = (folder / "metabench-suite.toml").read_text()
    toml = toml[:toml.index("[splits]")] + '[splits]\nrule = "hash"\ntrain = 0.5\nval = 0.25\ntest = 0.25\n'
    (folder / "metabench-suite.toml").write_text(toml)
    suite = ImageFolderSuite.from_toml(folder)
    data = load_image_folder(suite.spec)
    sizes = {s: len(c) for s, c in data.classes.items()}
    assert sum(sizes.values()) == 40 and min(sizes.values()) >= 5, sizes
    assert suite.split_scheme == "hash-0.5-0.25-0.25"


def _edit(folder: Path, old: str, new: str) -> None:
    p = folder / "metabench-suite.toml"
    p.write_text(p.read_text().replace(old, new))


@pytest.mark.parametrize("breakage, match", [
    (lambda f: _edit(f, "way = 5", "way = five"), r"is not valid TOML \(Invalid value"),
    (lambda f: _edit(f, "way = 5", "ways = 5"), "unknown key.*ways"),
    (lambda f: _edit(f, "shot = 1\n", ""), "the key 'shot' is missing"),
    (lambda f: _edit(f, "channels = 1", "channels = 2"), "channels must be 1 .grayscale. or 3 .RGB., got 2"),
    (lambda f: _edit(f, 'id = "broken"', 'id = "a/b"'), "id must be letters, digits"),
    (lambda f: (f / "test.txt").write_text("class00\nclass11\n"),
     "class 'class00' is listed in both the train and the test split files; the splits must not overlap"),
])
def test_folder_suite_declaration_errors(tmp_path, breakage, match):
    from metabench.suites.image_folder import read_spec

    folder = make_folder(tmp_path, "broken")
    breakage(folder)
    with pytest.raises(ConfigError, match=match) as err:
        read_spec(folder)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("breakage, match", [
    (lambda f: (f / "test.txt").write_text("class10\nclass11\nclass12\nclass13\nclass99\n"),
     r"the split files name 1 class folder\(s\) with no .png/.jpg/.jpeg images in .*: 'class99'"),
    (lambda f: [p.unlink() for p in sorted((f / "images" / "class03").iterdir())[:3]],
     r"class 'class03' has 3 image\(s\) but shot \+ queries = 1 \+ 3 needs at least 4 per class"),
    (lambda f: (f / "val.txt").write_text("class05\nclass06\n"), "the val split has 2 class.es.; 5-way tasks need at least 5"),
    (lambda f: (f / "images" / "class07" / "0.png").write_bytes(b"not a png"), r"cannot decode .*0.png"),
])
def test_folder_suite_content_errors(tmp_path, breakage, match):
    from metabench.suites.image_folder import ImageFolderSuite

    folder = make_folder(tmp_path, "content")
    breakage(folder)
    with pytest.raises(MetabenchError, match=match) as err:
        ImageFolderSuite.from_toml(folder).prepare(None, "cpu", progress=False)
    assert "\n" not in str(err.value)


def test_folder_suite_id_clash_with_a_builtin_is_refused(tmp_path):
    from metabench.suites import SUITES, make_suite
    from metabench.suites.image_folder import register_folder_suites

    make_folder(tmp_path, "omniglot-5w1s")
    problems = register_folder_suites(SUITES, tmp_path)
    assert problems == [f"the suite id 'omniglot-5w1s' declared in {(tmp_path / 'omniglot-5w1s' / 'metabench-suite.toml').resolve()}"
                        " is already taken (built-in); choose another id"]
    assert SUITES.origin("omniglot-5w1s") == "built-in" and type(make_suite("omniglot-5w1s")).__name__ == "Omniglot"


def test_a_refused_suite_folder_is_explained_when_its_suite_is_asked_for(tmp_path):
    folder = make_folder(tmp_path, "broken")
    _edit(folder, "way = 5", "way = five")
    r = subprocess.run(["metabench", "run", "--suites", "broken", "--algorithms", "protonet", "--dry-run"],
                       env=_env(METABENCH_DATA=str(tmp_path)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: Unknown suite 'broken'.") and "is not valid TOML" in r.stderr, r.stderr


def test_example_algorithm_by_import_path_on_a_folder_suite(folder_root, monkeypatch):
    """The example's algorithm without installing it (its folder on sys.path, an import path)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    report = run_checks("metabench_example.cosine_protonet:CosineProtoNet", "shapes-5w1s", data_root=folder_root)
    assert report.ok, [r for r in report.results if not r.ok]


@pytest.mark.slow
def test_folder_suite_and_cwd_plugin_in_job_workers(folder_root, plugins, tmp_path):
    """`metabench run` on a folder suite, with a plugin imported from the current directory: the
    job's worker processes find both (they get METABENCH_DATA and the working directory)."""
    (plugins / "my_proto.py").write_text("from metabench.algorithms.protonet import ProtoNet\n"
                                         "class MyProto(ProtoNet):\n    name = 'my-proto'\n")
    results = tmp_path / "results"
    r = subprocess.run(["metabench", "run", "--suites", "shapes-5w1s", "--algorithms", "my_proto:MyProto",
                        "--preset", "smoke", "--results-dir", str(results), "--quiet", "--workers", "1"],
                       cwd=plugins, env=_env(METABENCH_DATA=str(folder_root)), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "1 cell(s) finished" in r.stdout, r.stdout + r.stderr
    assert (results / "shapes-5w1s--my_proto.MyProto--smoke--seed0" / "tasks.parquet").is_file()


# --- the installed example: entry points -----------------------------------------------------
def _installed() -> bool:
    from importlib.metadata import entry_points

    return importlib.util.find_spec("metabench_example") is not None and any(
        ep.name == "cosine-protonet" for ep in entry_points(group="metabench.algorithms"))


needs_example = pytest.mark.skipif(not _installed(), reason="the example plugin is not installed; "
                                                            "run `pip install -e examples/plugin` (CI does)")


@needs_example
def test_example_entry_points_are_registered_with_their_origin():
    from metabench.algorithms import ALGORITHMS
    from metabench.suites import SUITES, make_suite

    assert ALGORITHMS.origin("cosine-protonet") == "metabench-example-plugin 0.1.0"
    assert SUITES.origin("omniglot-mini-5w1s") == "metabench-example-plugin 0.1.0"
    s = make_suite("omniglot-mini-5w1s")
    assert (s.id, s.n_way, s.n_shot, s.input_shape) == ("omniglot-mini-5w1s", 5, 1, (1, 28, 28))


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory) -> Path:
    """A writable data root: the staged Omniglot (linked) and omniglot-mini built by the example's script."""
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "omniglot" / "images_background.zip").is_file():
        pytest.skip(f"staged Omniglot not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("mini-data")
    (root / "omniglot").symlink_to(SHARED_DATA / "omniglot")
    r = subprocess.run([sys.executable, "-m", "metabench_example.build_omniglot_mini", "--data-dir", str(root)],
                       env=_env(), cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return root


@pytest.mark.slow
@needs_example
def test_example_passes_check_on_its_own_suite(mini_data, capsys):
    from metabench.checks import check_suite
    from metabench.suites import make_suite

    suite = make_suite("omniglot-mini-5w1s").prepare(mini_data, "cpu", progress=False)
    check_suite(suite)
    assert {s: suite.n_classes(s) for s in ("train", "val", "test")} == {"train": 135, "val": 22, "test": 52}
    assert main(["check", "cosine-protonet", "--suite", "omniglot-mini-5w1s", "--data-dir", str(mini_data)]) == 0
    assert f"all {len(RULES)} checks passed" in capsys.readouterr().out


@pytest.mark.slow
@needs_example
def test_example_beside_protonet_on_omniglot_and_in_the_leaderboard(shared_data, tmp_path):
    results = tmp_path / "results"
    r = subprocess.run(["metabench", "run", "--suites", "omniglot-5w1s", "--algorithms", "protonet,cosine-protonet",
                        "--preset", "smoke", "--results-dir", str(results), "--quiet"],
                       env=_env(METABENCH_DATA=str(shared_data)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "2 cell(s) finished" in r.stdout, r.stdout + r.stderr
    board = subprocess.run(["metabench", "leaderboard", "--results-dir", str(results), "--format", "csv"],
                           env=_env(), capture_output=True, text=True, timeout=120)
    assert board.returncode == 0, board.stderr
    rows = list(csv.DictReader(io.StringIO(board.stdout)))
    assert sorted(r["algorithm"] for r in rows) == ["cosine-protonet", "protonet"], board.stdout
    assert all(r["suite"] == "omniglot-5w1s" and float(r["mean"]) > 0 for r in rows), board.stdout
