"""The ``ecgbench`` command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

import ecgbench
from ecgbench.errors import ConfigError, EcgbenchError

# Subcommand modules beside the core ones; each has register(subparsers).
COMMAND_MODULES = (
    "ecgbench.cli.runs",
    "ecgbench.cli.data",
    "ecgbench.cli.devices",
    "ecgbench.cli.eval",
    "ecgbench.cli.compare",
    "ecgbench.cli.export",
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        os.environ["ECGBENCH_QUIET"] = "1"
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except BrokenPipeError:
        # The reader went away (`ecgbench runs | head`): end quietly. Python docs,
        # "Note on SIGPIPE": point stdout at devnull so the flush at exit cannot fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is no real file (captured in a test)
            pass
        return 1
    except EcgbenchError as exc:
        print(f"ecgbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full or read-only disk met outside ecgbench.atomic (result store, artifacts)
        from ecgbench.atomic import write_error

        error = write_error(exc, exc.filename or "a file")
        if error is exc:
            raise
        print(f"ecgbench: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ecgbench: interrupted; finished cells are stored, run again to resume", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgbench", description=ecgbench.__doc__)
    parser.add_argument("--version", action="version", version=f"ecgbench {ecgbench.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for CI logs)")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("run", help="run a suite (resumes: finished cells are skipped)")
    p.add_argument("suite", type=Path)
    _store_args(p)
    p.add_argument("--out", type=Path, help="report folder (default: the suite's report.out or reports/<suite name>)")
    p.add_argument("--only", metavar="PATTERN", help="glob on dataset/model/pipeline/seedN, a pipeline label, or a cell id prefix")
    p.add_argument("--force", action="store_true", help="redo finished cells too")
    p.add_argument("--executor", help="executor plugin (overrides the suite's), e.g. local, processes, ray")
    p.add_argument("--workers", type=int, help="workers for the processes executor")
    p.add_argument("--address", help="Ray cluster address for the ray executor (e.g. auto)")
    _data_dir_arg(p)
    p.add_argument("--smoke", action="store_true", help="1 epoch of 2 batches per training, 64 records scored: checks a suite runs end to end")
    p.add_argument(
        "--log", action="append", default=[], metavar="LOGGER",
        help="also log this run with an experiment logger, e.g. mlflow (repeatable; settings from the suite's loggers:, else defaults)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a suite without running anything")
    p.add_argument("suite", type=Path)
    _data_dir_arg(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plugins", help="list plugins, what they register and where they come from")
    p.add_argument("-v", "--verbose", action="store_true", help="also say what each registered thing does")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("report", help="write reports of a stored run, or of several runs of one suite merged (e.g. seeds run apart)")
    p.add_argument(
        "runs", nargs="+", metavar="RUN",
        help="run id, id prefix or suite name (its latest run), in --db; DB:RUN for a run in another store "
        "(e.g. other/results.sqlite:quick). Several: merged by cell id, the later finished of a duplicate used",
    )
    _store_args(p)
    p.add_argument("--allow-mixed", action="store_true", help="merge runs of different suites or matrices too")
    p.add_argument("--format", default="md,csv,json", help="comma-separated reporter names (default md,csv,json)")
    p.add_argument("--out", type=Path, help="folder (default reports/<suite name>)")
    p.add_argument(
        "--set", action="append", default=[], metavar="REPORTER.KEY=VALUE", help="a reporter setting, e.g. models.max_bytes=2500000 (repeatable)"
    )
    p.set_defaults(func=cmd_report)

    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(sub)
    return parser


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, help="result store (default $ECGBENCH_HOME/results.sqlite, ECGBENCH_HOME defaulting to ./.ecgbench)")


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        action="append",
        default=[],
        metavar="DATASET=DIR",
        help="folder of a dataset plugin, e.g. cinc2017=../shared/data/cinc2017 (repeatable)",
    )


def _registry():
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.registry import build_registry

    pm = make_plugin_manager()
    return pm, build_registry(pm)


def _overrides(pairs: list[str]) -> dict[str, dict]:
    out = {}
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--data-dir expects DATASET=DIR (e.g. cinc2017=../shared/data/cinc2017), got '{pair}'")
        out[name] = {"path": str(Path(folder).resolve())}
    return out


def _open_store(args, create: bool = False):
    """The store of ``--db`` (default under $ECGBENCH_HOME); only ``run`` may create it."""
    from ecgbench.run.runner import default_home
    from ecgbench.run.store import ResultStore

    path = args.db or default_home() / "results.sqlite"
    return ResultStore(path) if create else ResultStore.open_existing(path)


def cmd_validate(args) -> int:
    from ecgbench.run.cell import expand_cells
    from ecgbench.config.suite import load_suite

    from ecgbench.run.loggers import make_loggers

    _pm, registry = _registry()
    suite = load_suite(args.suite, registry, _overrides(args.data_dir))
    make_loggers(suite.loggers, registry)  # a logger's missing package is a configuration error
    cells = expand_cells(suite, registry)
    factors = " x ".join(
        _count(n, noun) for n, noun in ((len(suite.datasets), "dataset"), (len(suite.models), "model"), (len(suite.pipelines), "pipeline"), (len(suite.seeds), "seed"))
    )
    print(f"{args.suite}: ok, {_count(len(cells), 'cell')} = {factors}; devices: {', '.join(suite.devices) or 'none'}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cmd_run(args) -> int:
    from ecgbench.config.suite import PluginRef, load_suite, with_loggers
    from ecgbench.run.runner import default_home, plan_cells, run_suite

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be 1 or more (the number of cells run at once); omit it for the suite's executor")
    pm, registry = _registry()
    suite = load_suite(args.suite, registry, _overrides(args.data_dir))
    if args.log:
        suite = with_loggers(suite, args.log, registry)
    if args.smoke:
        suite = _smoke(suite)
    plan_cells(suite, registry, args.only)  # an empty plan fails here, before a store or folder is created
    executor = None
    if args.executor or args.workers or args.address:
        name = args.executor or suite.executor.name
        params = dict(suite.executor.params()) if name == suite.executor.name else {}
        if args.workers:
            params["workers"] = args.workers
        if args.address:
            params["address"] = args.address
        cls = registry.get("executors", name, "--executor")
        from ecgbench.kinds.base import parse_config

        executor = PluginRef("executors", name, parse_config(cls.Config, params, f"--executor {name}"))
    store = _open_store(args, create=True)
    home = Path(os.environ.get("ECGBENCH_HOME", args.db.parent if args.db else default_home()))
    started = time.perf_counter()
    summary = run_suite(suite, registry, pm, store, home, only=args.only, force=args.force, executor=executor, progress=not args.quiet)
    elapsed = time.perf_counter() - started
    print(f"run {summary.run_id}: {summary.done} done, {summary.skipped} already done, {summary.failed} failed in {elapsed:.1f} s")
    for title, error in summary.failures:
        print(f"  FAILED {title}: {error}")
    if summary.failures:
        print(f"  tracebacks: ecgbench runs {summary.run_id}" + (f" --db {args.db}" if args.db else ""))
    if args.out:
        out = args.out
    elif args.smoke:  # never overwrite a suite's published report with a smoke run
        out = home / "reports" / suite.name
    else:
        out = Path(suite.report.out or Path("reports") / suite.name)
    written = _write_reports(registry, store.run_results(summary.run_id), suite.report.formats, out, suite.report.settings)
    for path in written:
        print(f"  wrote {path}")
    return 0 if summary.ok else 1


SMOKE_EVAL_RECORDS = 64


def _smoke(suite):
    """The same suite with every training cut to 1 epoch of 2 batches, scored on 64 records."""
    import dataclasses

    update = {"epochs": 1, "max_batches_per_epoch": 2, "patience": 0, "max_eval_records": SMOKE_EVAL_RECORDS}
    training = suite.training.model_copy(update=update)
    return dataclasses.replace(suite, name=suite.name + "-smoke", training=training)


def _write_reports(registry, results, formats, out: Path, settings: dict | None = None) -> list[Path]:
    from ecgbench import atomic

    written = []
    with atomic.all_or_nothing():  # every report file is replaced together, or none is
        for fmt in formats:
            reporter = registry.get("reporters", fmt, "--format").from_params((settings or {}).get(fmt), f"report settings of '{fmt}'")
            written.extend(reporter.write(results, out))
    return written


def _reporter_settings(assignments: list[str]) -> dict[str, dict]:
    """``["models.max_bytes=2500000"]`` -> ``{"models": {"max_bytes": 2500000}}`` (values read as YAML)."""
    import yaml

    settings: dict[str, dict] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        reporter, dot, field = key.partition(".")
        if not (sep and dot and reporter and field):
            raise ConfigError(f"--set {item!r}: expected REPORTER.KEY=VALUE, e.g. --set models.max_bytes=2500000")
        settings.setdefault(reporter, {})[field] = yaml.safe_load(value)
    return settings


def _load_runs(args):
    """The runs named by ``args.runs`` (``RUN`` in ``--db``, ``DB:RUN`` elsewhere), merged when several."""
    from ecgbench.results.merge import merge_runs, parse_run_ref
    from ecgbench.run.store import ResultStore

    stores: dict[Path | None, ResultStore] = {}
    parts = []
    for text in args.runs:
        ref = parse_run_ref(text)
        key = ref.db.resolve() if ref.db is not None else None
        if key not in stores:
            stores[key] = _open_store(args) if ref.db is None else ResultStore.open_existing(ref.db)
        parts.append(stores[key].run_results(ref.ref))
    results = merge_runs(parts, allow_mixed=args.allow_mixed)
    for warning in getattr(results, "warnings", []):
        print(f"ecgbench: warning: {warning}", file=sys.stderr)
    return results


def cmd_report(args) -> int:
    _pm, registry = _registry()
    results = _load_runs(args)
    out = args.out or Path("reports") / results.run.suite_name
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    for fmt in formats:
        registry.get("reporters", fmt, "--format")
    settings = _reporter_settings(args.set)
    for fmt in settings:
        if fmt not in formats:
            raise ConfigError(f"--set {fmt}.*: '{fmt}' is not among --format {','.join(formats)}; add it there")
    for path in _write_reports(registry, results, formats, out, settings):
        print(f"wrote {path}")
    return 0


def cmd_plugins(args) -> int:
    from ecgbench.kinds.base import summary_of
    from ecgbench.plugin_manager import plugin_sources
    from ecgbench.registry import SINGULAR

    pm, registry = _registry()
    sources = plugin_sources(pm)
    provided: dict[str, list[tuple[str, str]]] = {}
    for kind, providers in registry.providers.items():
        for thing, plugin in providers.items():
            provided.setdefault(plugin, []).append((f"{SINGULAR[kind]} {thing}", summary_of(registry.tables[kind][thing])))
    for name, source in sorted(sources.items(), key=lambda kv: (kv[1].origin != "builtin", kv[0])):
        things = sorted(provided.get(name, []))
        print(f"{name}  [{source.origin}]\n    {', '.join(t for t, _ in things) or 'lifecycle hooks only'}")
        if args.verbose:
            for thing, summary in things:
                print(f"      {thing}: {summary}" if summary else f"      {thing}")
    from ecgbench.plugin_manager import broken_plugins

    for broken in broken_plugins():
        print(f"{broken.name}  [BROKEN: entry point {broken.dist} {broken.version}]\n    {broken.message()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
