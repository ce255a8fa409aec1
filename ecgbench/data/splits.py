"""Train/val/test assignment: stratified by class and seeded, or read from a ``record,split`` file.

Records of one recording (windows cut from it, see ``split_group``) always
land in the same split, so no recording is in two splits.
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
) -> dict[str, str]:
    """``{record_id: "train" | "val" | "test"}`` for every record."""
    groups = groups if groups is not None else list(record_ids)
    if config.file:
        return read_split_file(Path(config.file), record_ids, groups, skipped)
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


def read_split_file(path: Path, record_ids: list[str], groups: list[str], skipped: set[str] = frozenset()) -> dict[str, str]:
    """Splits from a ``record,split`` CSV; rows may name records or their groups (recordings). Every record needs a row."""
    missing = f"split file {path} does not exist; write rows 'record,split' (train, val or test) or remove data.split.file"
    known = set(record_ids) | set(groups)
    named: dict[str, str] = {}
    for line_no, name, split in read_csv_pairs(path, ("record", "split"), missing):
        if split not in SPLITS:
            raise DatasetError(f"{path} line {line_no}: split '{split}' for record '{name}' is not one of train, val, test; fix the line")
        if named.get(name, split) != split:
            raise DatasetError(f"{path} line {line_no}: record '{name}' is put in both {named[name]} and {split}; keep one row")
        if name not in known and name not in skipped:
            raise DatasetError(f"{path} line {line_no}: the dataset has no record '{name}'; remove the row or fix the name")
        named[name] = split
    out = {}
    for record_id, group in zip(record_ids, groups):
        split = named.get(record_id, named.get(group))
        if split is None:
            raise DatasetError(f"{path}: record '{record_id}' has no row; add '{record_id},train' (or val, test)")
        out[record_id] = split
    return out
