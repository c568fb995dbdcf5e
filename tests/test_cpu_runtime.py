"""The engine's CPU runtime. Its own threads (nets/kernels/parallel.py): a batch's chunks split
evenly among them, results in order, BLAS single-threaded inside and restored after, no nesting;
a convolution that gives the same result on one thread and on two, the same again when repeated.
Its process settings (nets/runtime.py): OpenBLAS's idle threads sleep sooner unless the user
says otherwise, and arrays up to 32 MiB come from the heap instead of fresh kernel mappings."""
import ctypes
import os
import subprocess
import sys
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


def _python(code: str, **env) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    return subprocess.run([sys.executable, "-c", code], env={**environment, **env}, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_importing_nets_puts_openblas_idle_threads_to_sleep_sooner_unless_the_user_chose():
    code = "import nets, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    assert _python(code) == nets.runtime.OPENBLAS_THREAD_TIMEOUT
    assert _python(code, OPENBLAS_THREAD_TIMEOUT="28") == "28"


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc's mallinfo2")
def test_arrays_of_a_few_mebibytes_come_from_the_heap_not_from_fresh_mappings():
    code = """
import ctypes
{setup}
class Mallinfo2(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t fields
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
mapped = libc.mallinfo2().hblkhd  # bytes in mappings of their own
array = bytearray(4 << 20)  # 4 MiB, above glibc's default threshold
print(libc.mallinfo2().hblkhd - mapped >= 4 << 20)
"""
    assert _python(code.format(setup="")) == "True"  # glibc's default: a mapping of its own
    assert _python(code.format(setup="import nets")) == "False"


def test_a_forked_child_runs_parallel_regions_on_threads_of_its_own():
    """The parent's pool threads do not exist in a child made by fork: the child makes its own
    pool instead of waiting forever on the parent's."""
    import multiprocessing

    with nets.threads.limited(2):
        if parallel.threads() < 2:
            pytest.skip("this machine's BLAS runs one thread")
        parallel.map_groups(sum, [1, 2])  # the parent's pool exists from here
        with multiprocessing.get_context("fork").Pool(1) as pool:
            result = pool.apply_async(parallel.map_groups, (sum, [1, 2]))
            assert result.get(timeout=30) == [1, 2]
