"""Build the example suite's image folder from a staged Omniglot (nothing is downloaded).

    python -m metabench_example.build_omniglot_mini [--data-dir DATA] [--omniglot DIR]

Reads Omniglot's ``images_background.zip`` / ``images_evaluation.zip`` (as ``metabench data
fetch omniglot`` leaves them in ``DATA/omniglot``) and copies the PNGs of the 8 alphabets named in
``splits/*.txt``, byte for byte, to ``DATA/omniglot-mini/<Alphabet>--characterNN/*.png``
(209 characters x 20 drawers = 4,180 small files). ``DATA`` is ``--data-dir``, else
``METABENCH_DATA``, else metabench's per-user data folder; it must be writable (pass a folder of
your own if the staged data is read-only, and run metabench with the same ``--data-dir`` /
``METABENCH_DATA``). Running it again is a no-op.

Omniglot: Lake, Salakhutdinov & Tenenbaum (2015), Science 350(6266); MIT licence.
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ZIPS = ("images_background.zip", "images_evaluation.zip")


def wanted_classes() -> set[str]:
    names = set()
    for split in ("train", "val", "test"):
        for line in (HERE / "splits" / f"{split}.txt").read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                names.add(line.strip())
    return names


def build(data_dir: Path, omniglot: Path) -> int:
    """Copy the PNGs; returns how many files were written."""
    classes = wanted_classes()
    out = data_dir / "omniglot-mini"
    written = 0
    for name in ZIPS:
        with zipfile.ZipFile(omniglot / name) as z:
            for member in z.namelist():
                parts = member.split("/")   # images_background/<Alphabet>/characterNN/NNNN_DD.png
                if len(parts) != 4 or not parts[3].endswith(".png"):
                    continue
                cls = f"{parts[1]}--{parts[2]}"
                if cls not in classes:
                    continue
                target = out / cls / parts[3]
                if target.is_file():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(z.read(member))
                os.replace(tmp, target)   # a file is whole or absent
                written += 1
    found = {p.name for p in out.iterdir() if p.is_dir()} if out.is_dir() else set()
    if found & classes != classes:
        raise SystemExit(f"error: {len(classes - found)} of the {len(classes)} characters were not found in "
                         f"{omniglot}; is it a complete Omniglot (both zips)?")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m metabench_example.build_omniglot_mini", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="data root to write omniglot-mini/ into (default: $METABENCH_DATA)")
    ap.add_argument("--omniglot", default=None, help="folder holding Omniglot's zips (default: DATA/omniglot)")
    args = ap.parse_args(argv)
    from metabench.datafiles import resolve_data_root

    data = resolve_data_root(args.data_dir)
    omniglot = Path(args.omniglot) if args.omniglot else data / "omniglot"
    missing = [z for z in ZIPS if not (omniglot / z).is_file()]
    if missing:
        print(f"error: {', '.join(missing)} not found in {omniglot}; run `metabench data fetch omniglot` or pass "
              f"--omniglot DIR", file=sys.stderr)
        return 2
    try:
        n = build(data, omniglot)
    except OSError as exc:
        print(f"error: cannot write under {data} ({exc.strerror or exc}); pass --data-dir with a writable folder",
              file=sys.stderr)
        return 2
    print(f"{data / 'omniglot-mini'} is ready ({n} file(s) written); "
          f"try: metabench check cosine-protonet --suite omniglot-mini-5w1s --data-dir {data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
