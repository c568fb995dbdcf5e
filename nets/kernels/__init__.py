"""Hot loops: Numba kernels on the CPU and CuPy kernels on the GPU, with one contract each."""
