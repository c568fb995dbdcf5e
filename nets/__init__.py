"""nets: a small define-by-run network engine on NumPy/Numba (CPU) and CuPy (GPU)."""
import os

# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after each threaded product, on the cores
# that the engine's own threads (nets/kernels/parallel.py) want next: 2^20 cycles (~0.4 ms) keeps
# them through a burst of products and out of the way after it (on 2 cores: PPO's Atari minibatch
# 0.71x its time, A3C's batch of 128 0.63x, SAC's step level). OpenBLAS reads it once, as NumPy
# loads: an importer that loaded NumPy first can export it itself.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from . import backend, checkpoint, functional, init, optim, threads
from .backend import gpu_available, to_device
from .layers import (AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Embedding, Flatten,
                     GlobalAvgPool, Linear, MaxPool2D)
from .layers import (GRU, LSTM, RHN, RNN, Bidirectional, DeepTransitionRNN, GRUCell, Highway,
                     LSTMCell, RNNCell, detach_state)
from .layers import AdditiveAttention, DotAttention, Seq2Seq
from .layers import (NTM, ConvTranspose2D, DenseBlock, DenseNet, DenseTransition,
                     DynamicMemoryNetwork, MemoryNetwork, ResidualBlock, ResNet, SpatialTransformer,
                     Upsample)
from . import sampling
from .module import FlatParameters, Module, Parameter, Sequential
from .rng import seed
from .tensor import (Function, NonFiniteError, Tensor, check_mode, is_check_mode, is_grad_enabled,
                     no_grad, set_check_mode)

F = functional

__all__ = [
    "F", "backend", "checkpoint", "functional", "init", "optim", "threads", "gpu_available",
    "to_device",
    "Dense", "Linear", "AvgPool2D", "BatchNorm", "Conv2D", "Dropout",
    "Embedding", "Flatten", "GlobalAvgPool", "MaxPool2D",
    "FlatParameters", "Module", "Parameter", "Sequential", "seed", "Function", "NonFiniteError",
    "Tensor", "check_mode", "is_check_mode", "is_grad_enabled", "no_grad", "set_check_mode",
]
__all__ += ["GRU", "LSTM", "RHN", "RNN", "Bidirectional", "DeepTransitionRNN", "GRUCell", "Highway",
            "LSTMCell", "RNNCell", "detach_state", "AdditiveAttention", "DotAttention", "Seq2Seq",
            "sampling"]
__all__ += ["NTM", "ConvTranspose2D", "DenseBlock", "DenseNet", "DenseTransition",
            "DynamicMemoryNetwork", "MemoryNetwork",
            "ResidualBlock", "ResNet", "SpatialTransformer", "Upsample"]
