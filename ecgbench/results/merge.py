"""Several stored runs of one suite read as one: ``ecgbench report RUN1 RUN2 ...``.

Seeds run at different times or on different machines land in different runs,
perhaps in different stores. :func:`merge_runs` joins their cells by cell id
(the hash of everything that determines a result, so the same id is the same
experiment): when two runs hold one cell id, a done cell beats an unfinished one
and, between two of the same kind, the one that finished later wins, with a
warning. Runs must be of one suite: the same suite name, and every pipeline label
(dataset / model / pipeline) they share names the same settings (steps, data,
training, measurement, devices). Otherwise the merge is refused, naming both
runs, unless ``allow_mixed``.

A run is named as ``RUN`` (id, id prefix or suite name, in the default store) or
``DB:RUN`` (``results.sqlite:quick`` : the run in another store file); see
:func:`parse_run_ref`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecgbench.errors import ConfigError
from ecgbench.run.store import CellRow, RunResults, RunRow

# Cell config keys that differ by seed or by machine, not by what a label means.
_PER_SEED_KEYS = ("cell_id", "seed", "baseline_key")
# Status of a merged run: the first of these any of its runs has, else done.
_STATUS_ORDER = ("running", "interrupted", "failed")


@dataclass
class RunRef:
    """A run as named on the command line: ``ref`` in the store at ``db`` (None: the default store)."""

    ref: str
    db: Path | None = None


def parse_run_ref(text: str) -> RunRef:
    """``RUN`` or ``DB:RUN``: the part before the last ``:`` is a store when it names an existing file.

    A colon inside a run name (never in the ids ecgbench makes) is kept as part
    of the name when no such file exists.
    """
    db, sep, ref = text.rpartition(":")
    if sep and db and ref and Path(db).is_file():
        return RunRef(ref, Path(db))
    if sep and db and (db.endswith(".sqlite") or "/" in db):
        raise ConfigError(f"run '{text}': no result store at {db}; write DB:RUN with DB an existing results.sqlite")
    return RunRef(text)


@dataclass
class MergedResults(RunResults):
    """:class:`RunResults` of several runs: ``run`` sums them up, ``runs`` and ``stores`` are the runs merged, in order.

    ``cell_runs`` maps each cell id to the id of the run whose result is used;
    ``warnings`` says which duplicate cells were replaced.
    """

    runs: list[RunRow] = field(default_factory=list)
    stores: list[Path | None] = field(default_factory=list)
    cell_runs: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    allow_mixed: bool = False


def merge_runs(parts: list[RunResults], allow_mixed: bool = False) -> RunResults:
    """One :class:`RunResults` of ``parts`` (one part: returned as it is); see the module's docstring for the rules."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ConfigError("no run to report; name at least one RUN")
    ids = [p.run.run_id for p in parts]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"run {', '.join(repeated)} named twice (or the same run in two stores); name each run once")
    if not allow_mixed:
        check_same_suite(parts)
    chosen: dict[str, tuple[CellRow, RunResults]] = {}
    order: list[str] = []  # cell ids in order of first appearance (suite order of the first run that has them)
    warnings: list[str] = []
    for part in parts:
        for cell in part.cells:
            if cell.cell_id not in chosen:
                chosen[cell.cell_id] = (cell, part)
                order.append(cell.cell_id)
                continue
            old, old_part = chosen[cell.cell_id]
            keep_new = _rank(cell, part) > _rank(old, old_part)
            winner, loser = (part, old_part) if keep_new else (old_part, part)
            kept = cell if keep_new else old
            same = _same_result(old, cell)
            warnings.append(
                f"cell {_title(cell)} ({cell.cell_id[:12]}) is in runs {old_part.run.run_id} and {part.run.run_id}"
                f"{' with the same result' if same else ''}: using {winner.run.run_id}'s ({_finished(kept)}),"
                f" not {loser.run.run_id}'s"
            )
            if keep_new:
                chosen[cell.cell_id] = (cell, part)
    cells = [chosen[i][0] for i in order]
    cells = _group_by_pipeline(cells)
    return MergedResults(
        run=_merged_run(parts, cells),
        cells=cells,
        store_path=None,
        runs=[p.run for p in parts],
        stores=[p.store_path for p in parts],
        cell_runs={i: chosen[i][1].run.run_id for i in order},
        warnings=warnings,
        allow_mixed=allow_mixed,
    )


def check_same_suite(parts: list[RunResults]) -> None:
    """Raise unless every run has the first's suite name and every shared pipeline label means the same settings."""
    first = parts[0]
    for other in parts[1:]:
        a, b = first.run, other.run
        if a.suite_name != b.suite_name:
            raise ConfigError(
                f"runs {a.run_id} (suite {a.suite_name}) and {b.run_id} (suite {b.suite_name}) are of different suites; "
                "merge runs of one suite, or pass --allow-mixed"
            )
    meaning: dict[tuple[str, str, str], tuple[dict, str]] = {}
    for part in parts:
        for cell in part.cells:
            label = (cell.dataset, cell.model, cell.pipeline)
            settings = label_settings(cell.config)
            if label not in meaning:
                meaning[label] = (settings, part.run.run_id)
                continue
            known, run_id = meaning[label]
            if settings != known:
                key = _first_difference(known, settings)
                raise ConfigError(
                    f"runs {run_id} and {part.run.run_id} have incompatible matrices: {'/'.join(label)} differs at {key} "
                    f"({_short(lookup_path(known, key))} vs {_short(lookup_path(settings, key))}); "
                    "merge runs of one suite, or pass --allow-mixed"
                )


def label_settings(config: dict) -> dict:
    """What a pipeline label stands for: the cell's config without its seed, id and, where the data's content
    fingerprint is known, the dataset's settings (a folder differs from machine to machine, the content does not)."""
    out = {k: v for k, v in (config or {}).items() if k not in _PER_SEED_KEYS}
    dataset = out.get("dataset")
    if isinstance(dataset, dict) and dataset.get("fingerprint"):
        out["dataset"] = {"name": dataset.get("name"), "fingerprint": dataset["fingerprint"]}
    return out


def lookup_path(mapping: Any, key: str) -> Any:
    for part in key.split(".") if key else []:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(part)
    return mapping


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    """The dotted path of the first key whose values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "(top level)"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _rank(cell: CellRow, part: RunResults) -> tuple[int, float]:
    """Which duplicate wins: done before unfinished, then the later finished (the cell's time, else its run's)."""
    finished = cell.finished_at or part.run.finished_at or part.run.started_at or 0.0
    return (int(cell.status == "done"), finished)


def _same_result(a: CellRow, b: CellRow) -> bool:
    return a.status == b.status and a.metrics == b.metrics and a.finished_at == b.finished_at


def _finished(cell: CellRow) -> str:
    from ecgbench.results.table import when

    return f"{cell.status}, finished {when(cell.finished_at)}" if cell.finished_at else cell.status


def _title(cell: CellRow) -> str:
    return f"{cell.dataset}/{cell.model}/{cell.pipeline}/seed{cell.seed}"


def _group_by_pipeline(cells: list[CellRow]) -> list[CellRow]:
    """Cells in the order of their first (dataset, model, pipeline), seeds ascending within one."""
    first: dict[tuple[str, str, str], int] = {}
    for i, c in enumerate(cells):
        first.setdefault((c.dataset, c.model, c.pipeline), i)
    return sorted(cells, key=lambda c: (first[(c.dataset, c.model, c.pipeline)], c.seed))


def _merged_run(parts: list[RunResults], cells: list[CellRow]) -> RunRow:
    """A run row that sums the merged runs up: their ids joined by ``+``, the latest one's suite (devices of all)."""
    runs = [p.run for p in parts]
    latest = max(runs, key=lambda r: r.finished_at or r.started_at)
    suite = json.loads(json.dumps(latest.suite, default=str))
    devices: list[str] = []
    for run in runs:
        for name in lookup_path(run.suite, "matrix.devices") or []:
            if isinstance(name, str) and name not in devices:
                devices.append(name)
    if devices and isinstance(suite.get("matrix"), dict):
        suite["matrix"]["devices"] = devices
    statuses = {r.status for r in runs}
    status = next((s for s in _STATUS_ORDER if s in statuses), "done")
    finished = [r.finished_at for r in runs]
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.outcome or cell.status] = counts.get(cell.outcome or cell.status, 0) + 1
    return RunRow(
        run_id="+".join(r.run_id for r in runs),
        suite_name=latest.suite_name if len({r.suite_name for r in runs}) == 1 else "+".join(dict.fromkeys(r.suite_name for r in runs)),
        suite_path=latest.suite_path,
        suite=suite,
        started_at=min(r.started_at for r in runs),
        finished_at=None if any(f is None for f in finished) else max(finished),
        status=status,
        summary=counts,
        ecgbench_version=", ".join(dict.fromkeys(r.ecgbench_version for r in runs)),
        planned=len(cells),
    )
