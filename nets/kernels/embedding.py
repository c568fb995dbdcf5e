"""Embedding gradient: scatter-add rows into a table, repeated indices accumulating.

Contract, the same on every device: `table[indices[i]] += rows[i]` for every i, in place, where
`table` is (num, dim), `indices` (n,) integers in [0, num) and `rows` (n, dim).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .. import backend


@njit(cache=True, fastmath=True)
def _scatter_add(table, indices, rows):
    for i in range(indices.shape[0]):
        j = indices[i]
        for d in range(rows.shape[1]):
            table[j, d] += rows[i, d]


def scatter_add(table, indices, rows) -> None:
    xp = backend.get_array_module(table)
    if xp is not np:
        xp.add.at(table, indices, rows)  # CuPy's add.at is an atomic scatter kernel
        return
    _scatter_add(table, indices, rows)
