"""The commands over the files metabench keeps: the shipped reference set (`metabench reference`),
a results folder (`results verify`) and the datasets (`data fetch`)."""
from __future__ import annotations

from pathlib import Path

from metabench.cli.browse import CHECKOUT
from metabench.errors import MetabenchError


def cmd_reference(args) -> int:
    from metabench.reference import manifest, reference_dir

    action = args.reference_command
    if action == "add":
        from metabench.datafiles import resolve_data_root
        from metabench.reference.add import add_runs

        outcomes = add_runs(args.results_dir, args.run_ids or None, data_root=resolve_data_root(args.data_dir),
                            say=lambda o: print(o, flush=True))
        running = {o.run_id for o in outcomes if o.action == "running"}
        state = manifest.write_manifest(reference_dir(), manifest.previously_running() | running)
        added = sum(o.action in ("added", "replaced") for o in outcomes)
        refused = sum(o.action == "refused" for o in outcomes)
        print(f"{added} run(s) added, {refused} refused, {len(running)} still running; manifest: "
              f"{sum(v == 'finished' for v in state.values())} of {len(state)} intended cells finished "
              f"({manifest.MANIFEST_TOML})")
        readme = CHECKOUT / "README.md"   # a checkout: keep its table current
        if added and readme.exists():
            from metabench.reference.table import BEGIN, update_readme

            if BEGIN in readme.read_text(encoding="utf-8") and update_readme(readme):
                print(f"updated the reference table in {readme}")
        return 1 if refused and not added else 0
    if action == "status":
        running = None
        if args.watch:
            running = {r for d in args.watch for r, s in manifest.shipped_states(Path(d)).items() if s == "running"}
        state = (manifest.write_manifest(reference_dir(), running) if args.write else
                 manifest.states(reference_dir(), manifest.previously_running() if running is None else running))
        cells = manifest.intended_cells()
        for tier in (1, 2):
            mine = [c for c in cells if c.tier == tier]
            counts = {k: sum(state[c.run_id] == k for c in mine) for k in manifest.STATES}
            print(f"tier {tier}: {len(mine)} cells, " + ", ".join(f"{n} {k}" for k, n in counts.items()))
            for c in mine:
                if state[c.run_id] != "not run" or tier == 1:
                    print(f"  {state[c.run_id]:<9} {c.run_id}")
        extra = sorted(set(manifest.shipped_states(reference_dir())) - set(state))
        if extra:
            print("shipped beyond the manifest: " + ", ".join(extra))
        print(f"shipped folder: {reference_dir()}" + (f"; wrote {manifest.MANIFEST_TOML}" if args.write else ""))
        return 0
    if action == "table":
        from metabench.reference.table import markdown_table, update_readme

        if args.write:
            readme = Path(args.readme) if args.readme else CHECKOUT / "README.md"
            try:
                changed = update_readme(readme)
            except ValueError as exc:
                raise MetabenchError(str(exc)) from None
            print(f"{'updated' if changed else 'unchanged'}: the reference table in {readme}")
            return 0
        print(markdown_table(), end="")
        return 0
    raise MetabenchError("usage: metabench reference add RESULTS_DIR [RUN_ID...] | status [--watch DIR] [--write] "
                         "| table [--markdown] [--write]")


def cmd_results(args) -> int:
    from metabench.results.verify import format_report, verify_results

    if args.results_command != "verify":
        raise MetabenchError("usage: metabench results verify [--results-dir DIR] [--clean]")
    report = verify_results(Path(args.results_dir), clean=args.clean)
    print(format_report(report))
    return 0 if report.ok else 1


def cmd_data(args) -> int:
    from metabench.datasets import fetch_command

    if args.data_command != "fetch":
        raise MetabenchError("usage: metabench data fetch omniglot|cifar100 [--data-dir DIR]")
    checksums = {}
    for item in args.checksum:
        if "=" not in item:
            raise MetabenchError(f"--checksum takes PATH=ALGO:HEX (e.g. images_background.zip=sha256:69c2...), got {item!r}")
        k, v = item.split("=", 1)
        checksums[k] = v
    path = fetch_command(args.dataset, args.data_dir, base_url=args.base_url, checksums=checksums or None)
    print(f"{args.dataset} is ready in {path}")
    return 0
