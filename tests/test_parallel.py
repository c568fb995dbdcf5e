"""The engine's own threads (nets/kernels/parallel.py): a batch's chunks split evenly among them,
results in order, BLAS single-threaded inside and restored after, no nesting; and a convolution
that gives the same result on one thread and on two, the same again when repeated."""
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import nets
from nets.kernels import parallel


def blas_threads() -> int:
    return min(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


def test_split_gives_contiguous_groups_within_one_of_each_other():
    assert parallel.split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert parallel.split([1, 2], 4) == [[1], [2]]  # never an empty group
    assert parallel.split([1, 2, 3], 1) == [[1, 2, 3]]


def test_groups_run_on_threads_of_their_own_with_single_threaded_blas_and_come_back_in_order():
    with nets.threads.limited(2):
        if parallel.threads() < 2:
            pytest.skip("this machine's BLAS runs one thread")
        seen = []

        def work(group):
            seen.append((threading.get_ident(), blas_threads(), parallel.threads()))
            return sum(group)

        assert parallel.map_groups(work, list(range(10))) == [sum(range(5)), sum(range(5, 10))]
        assert len({ident for ident, _, _ in seen}) == 2  # two threads
        assert all(blas == 1 and inner == 1 for _, blas, inner in seen)  # no nested regions
        assert blas_threads() == 2  # restored
        assert parallel.map_groups(work, list(range(10)), parallel=False) == [45]


def test_a_convolution_on_two_threads_matches_one_thread_and_repeats_exactly(rng, monkeypatch):
    from nets import functional_conv
    monkeypatch.setattr(functional_conv, "CHUNK_BYTES", 1)  # a chunk per sample: many chunks
    x = rng.standard_normal((6, 8, 20, 20)).astype(np.float32)
    results = {}
    for threads in (1, 2, 2):
        for method in ("blocks", "patches"):
            monkeypatch.setattr(functional_conv, "_blocks_pay", lambda *_, m=method: m == "blocks")
            nets.seed(0)
            conv = nets.Conv2D(8, 16, 4, stride=2, activation="relu")
            inputs = nets.Tensor(x, requires_grad=True)
            with nets.threads.limited(threads):
                y = conv(inputs)
                (y * y).sum().backward()
            got = [y.data.copy(), inputs.grad, conv.weight.grad, conv.bias.grad]
            key = (threads, method)
            if key in results:  # the same threads again: the same bits
                for a, b in zip(results[key], got):
                    np.testing.assert_array_equal(a, b)
            results[key] = got
    for method in ("blocks", "patches"):
        for a, b in zip(results[(1, method)], results[(2, method)]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
