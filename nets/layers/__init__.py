"""Layers: Modules that own parameters and call into nets.functional."""
from .attention import AdditiveAttention, DotAttention, Seq2Seq, dot_attention, masked_softmax
from .basic import Dropout, Flatten
from .conv import Conv2D
from .dense import Linear
from .embedding import Embedding
from .normalization import BatchNorm
from .pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from .recurrent import (GRU, LSTM, RHN, RNN, Bidirectional, DeepTransitionRNN, GRUCell, Highway,
                        LSTMCell, RNNCell, detach_state)
from .memory import NTM, DynamicMemoryNetwork, MemoryNetwork
from .residual import DenseBlock, DenseNet, DenseTransition, ResidualBlock, ResNet, resnet
from .spatial import ConvTranspose2D, SpatialTransformer, Upsample

Dense = Linear

__all__ = ["AvgPool2D", "BatchNorm", "Conv2D", "Dense", "Dropout", "Embedding", "Flatten",
           "GlobalAvgPool", "Linear", "MaxPool2D"]
__all__ += ["GRU", "LSTM", "RHN", "RNN", "Bidirectional", "DeepTransitionRNN", "GRUCell", "Highway",
            "LSTMCell", "RNNCell", "detach_state"]
__all__ += ["AdditiveAttention", "DotAttention", "Seq2Seq", "dot_attention", "masked_softmax"]
__all__ += ["NTM", "DynamicMemoryNetwork", "MemoryNetwork", "DenseBlock", "DenseNet", "DenseTransition",
            "ResidualBlock", "ResNet", "resnet", "ConvTranspose2D", "SpatialTransformer", "Upsample"]
