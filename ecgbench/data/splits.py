"""Train/val/test assignment: stratified by class and seeded, or read from a ``record,split`` file.

Records of one group (windows of one recording, recordings of one patient;
see ``Dataset.split_group``) always land in the same split, so no group is in
two splits. A split file may name records, recordings or groups, and
recordings that yielded no record (every window dropped).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ecgbench.data.config import SplitConfig
from ecgbench.data.wfdb_io import read_csv_pairs
from ecgbench.errors import DatasetError

SPLITS = ("train", "val", "test")


def assign_splits(
    record_ids: list[str],
    labels: np.ndarray,
    config: SplitConfig,
    groups: list[str] | None = None,
    skipped: set[str] = frozenset(),
    recordings: list[str] | None = None,
    empty: dict[str, str] | None = None,
) -> dict[str, str]:
    """``{record_id: "train" | "val" | "test"}`` for every record (``recordings``, ``empty``: see :func:`read_split_file`)."""
    groups = groups if groups is not None else list(record_ids)
    if config.file:
        return read_split_file(Path(config.file), record_ids, groups, skipped, recordings, empty)
    return stratified_split(record_ids, labels, groups, config.val, config.test, config.seed)


def stratified_split(
    record_ids: list[str], labels: np.ndarray, groups: list[str], val: float, test: float, seed: int
) -> dict[str, str]:
    """Per class (of a group: its most common label), shuffle the groups by ``seed``; the first ``test`` share is test, the next ``val`` share val."""
    by_group: dict[str, Counter] = {}
    for group, label in zip(groups, labels):
        by_group.setdefault(group, Counter())[int(label)] += 1
    group_class = {g: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for g, c in by_group.items()}
    rng = np.random.default_rng(seed)
    split_of_group: dict[str, str] = {}
    for cls in sorted(set(group_class.values())):
        members = sorted(g for g, c in group_class.items() if c == cls)
        order = [members[i] for i in rng.permutation(len(members))]
        n_test = _round_half_up(len(members) * test)
        n_val = _round_half_up(len(members) * val)
        for i, group in enumerate(order):
            split_of_group[group] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return {rid: split_of_group[g] for rid, g in zip(record_ids, groups)}


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def read_split_file(
    path: Path,
    record_ids: list[str],
    groups: list[str],
    skipped: set[str] = frozenset(),
    recordings: list[str] | None = None,
    empty: dict[str, str] | None = None,
) -> dict[str, str]:
    """Splits from a ``record,split`` CSV. Every record needs a row naming it, its recording or its group.

    ``recordings``: the recording of each record (default: the record itself); ``empty``: recordings that
    yielded no record, with their group (rows may name them); ``skipped``: bad records left out (rows may
    name them). Rows putting records of one group in two splits are an error naming both lines.
    """
    missing = f"split file {path} does not exist; write rows 'record,split' (train, val or test) or remove data.split.file"
    recordings = recordings if recordings is not None else record_ids
    group_of: dict[str, str] = {}
    for name, group in [*zip(record_ids, groups), *zip(recordings, groups), *zip(groups, groups), *(empty or {}).items()]:
        group_of.setdefault(name, group)
    named: dict[str, str] = {}
    first_of_group: dict[str, tuple[int, str, str]] = {}
    for line_no, name, split in read_csv_pairs(path, ("record", "split"), missing):
        if split not in SPLITS:
            raise DatasetError(f"{path} line {line_no}: split '{split}' for record '{name}' is not one of train, val, test; fix the line")
        if named.get(name, split) != split:
            raise DatasetError(f"{path} line {line_no}: record '{name}' is put in both {named[name]} and {split}; keep one row")
        if name not in group_of and name not in skipped:
            raise DatasetError(f"{path} line {line_no}: the dataset has no record '{name}'; remove the row or fix the name")
        named[name] = split
        group = group_of.get(name)
        if group is None:
            continue  # a skipped record
        first_line, first_name, first_split = first_of_group.setdefault(group, (line_no, name, split))
        if first_split != split:
            raise DatasetError(
                f"{path} lines {first_line} and {line_no}: '{first_name}' ({first_split}) and '{name}' ({split}) are both of group "
                f"'{group}', which would be in two splits; put every record of the group in one split"
            )
    out = {}
    for record_id, recording, group in zip(record_ids, recordings, groups):
        split = named.get(record_id) or named.get(recording) or named.get(group)
        if split is None:
            raise DatasetError(f"{path}: record '{record_id}' has no row; add '{record_id},train' (or val, test)")
        out[record_id] = split
    return out
