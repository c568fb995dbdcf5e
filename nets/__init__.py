"""nets: a small define-by-run network engine on NumPy/Numba (CPU) and CuPy (GPU)."""
from . import runtime

runtime.configure()  # before NumPy loads: see runtime.py

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
from .capture import CapturedGradients
from .module import FlatParameters, Module, Parameter, Sequential
from .rng import seed
from .tensor import (Function, NonFiniteError, Tensor, check_mode, is_check_mode, is_grad_enabled,
                     no_grad, set_check_mode)

F = functional

__all__ = [
    "F", "backend", "checkpoint", "functional", "init", "optim", "threads", "gpu_available",
    "to_device", "CapturedGradients",
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
