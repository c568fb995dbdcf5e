"""Embedding gradient: scatter-add rows into a table, repeated indices accumulating.

Contract, the same on every device: `table[indices[i]] += rows[i]` for every i, in place, where
`table` is (num, dim), `indices` (n,) integers in [0, num) and `rows` (n, dim).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit

from .. import backend


@njit(cache=True, fastmath=True)
def _scatter_add(table, indices, rows):
    for i in range(indices.shape[0]):
        j = indices[i]
        for d in range(rows.shape[1]):
            table[j, d] += rows[i, d]


@functools.cache
def _scatter_add_gpu():
    """One thread per element of `rows`, an atomic add into its table row (CuPy's add.at prepares
    its indices in several launches first)."""
    return backend.cupy_module().ElementwiseKernel(
        "T row, raw I indices, int64 dim", "raw T table",
        "atomicAdd(&table[indices[i / dim] * dim + i % dim], row);", "workbench_scatter_add")


def scatter_add(table, indices, rows) -> None:
    if backend.get_array_module(table) is np:
        _scatter_add(table, indices, rows)
    else:
        _scatter_add_gpu()(rows, indices, table.shape[1], table)
