"""2-D convolution (`F.conv2d`): two ways to the same result, chosen per call.

- Patches (im2col, every device): each output position becomes a row of patch values, and the
  convolution is one matrix product (positions, taps) @ (taps, out).
- Blocks (space-to-depth, CPU): for strided convolutions over enough channels; see
  nets/kernels/conv_blocks.py. It skips the patch matrix, which im2col writes about (k / s)^2
  times larger than the input: at a stride of 4 with an 8x8 kernel that copy costs more than the
  arithmetic.

An optional ReLU is fused into the op (`activation="relu"`): it is applied while the output is
written and its mask is applied while the gradient is read, which saves two passes over the
largest activations of a conv net and the temporaries of a separate op.

Both return (batch, out, oh, ow) in channels-last memory (a transposed view): that is what the
row-per-position product writes without a copy, and what the next conv or pool reads fastest.
On the CPU large batches run in chunks of samples so that each chunk's scratch stays in cache,
the chunks shared among the engine's threads (nets/kernels/parallel.py; on the GPU a batch is one
chunk); scratch buffers come from nets.kernels.workspace.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .functional import bias_gradient
from .kernels import conv as patches_kernels
from .kernels import conv_blocks as blocks_kernels
from .kernels import dense as dense_kernels
from .kernels import parallel, workspace
from .tensor import Function, Tensor, is_grad_enabled

_xp = backend.get_array_module

CHUNK_BYTES = 1 << 19  # scratch per chunk of samples: several buffers of it stay in L2 cache
KEEP_PATCHES_BYTES = 1 << 22  # patch matrices up to this size are kept for the weight gradient
# On the GPU every chunk costs a launch of each kernel and product (~20 us of Python and driver
# time), far more than the memory: one chunk for the whole batch, its patches kept, up to this.
GPU_SCRATCH_BYTES = 1 << 30
BLOCKS_MIN_DEPTH = 32  # blocks pay when a block row (channels * stride area) is at least this long
BLOCKS_MAX_WASTE = 1.5  # ... and padding the kernel to whole blocks adds at most this much work
ACTIVATIONS = (None, "relu")


def sum_into_first(arrays):
    """The sum of `arrays`, added into the first (threads' partial gradients)."""
    total = arrays[0]
    for array in arrays[1:]:
        total += array
    return total


def pair(value, what: str) -> tuple[int, int]:
    """(v, v) for an int, the pair itself for a pair of ints; a named error otherwise."""
    result = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(result) != 2 or not all(isinstance(v, (int, np.integer)) for v in result):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(result[0]), int(result[1])


def out_size(op: str, size: int, kernel: int, stride: int, padding: int, axis: str) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"{op}: a {axis} of {size} (padding {padding}) is smaller than the "
                         f"kernel's {kernel}")
    return out


def check_images(x, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op} expects (batch, channels, height, width) input, got shape {x.shape}")


def empty_images(xp, shape, dtype, channels_last: bool):
    """An uninitialised (n, c, h, w) array, in channels-last memory when asked."""
    if not channels_last:
        return xp.empty(shape, dtype=dtype)
    n, c, h, w = shape
    return xp.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


class _Conv2D(Function):
    """Shared by both methods: checks, output geometry and layout, chunking."""

    def __init__(self, stride, padding, activation=None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"conv2d activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.relu = activation == "relu"

    def forward(self, x, w, b=None):
        check_images(x, "conv2d")
        if w.ndim != 4 or w.shape[1] != x.shape[1]:
            raise ValueError(f"conv2d: weight {w.shape} does not fit input {x.shape}; expected "
                             f"(out_channels, {x.shape[1]}, kernel_h, kernel_w)")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"conv2d: bias has shape {b.shape}, expected ({w.shape[0]},)")
        self.kernel = w.shape[2:]
        (sy, sx), (py, px) = self.stride, self.padding
        self.out_hw = (out_size("conv2d", x.shape[2], w.shape[2], sy, py, "height"),
                       out_size("conv2d", x.shape[3], w.shape[3], sx, px, "width"))
        self.dtype = np.result_type(x.dtype, w.dtype)
        if _xp(x) is not np and x.dtype != self.dtype:  # the GPU kernels read one type
            x = x.astype(self.dtype)
        self.channels_last = patches_kernels.is_channels_last(x)
        self.x, self.w_shape = x, w.shape
        out = _xp(x).empty((x.shape[0], *self.out_hw, w.shape[0]), dtype=self.dtype)
        self._forward(x, w, b, out.reshape(-1, w.shape[0]))
        self.y = out.transpose(0, 3, 1, 2)
        return self.y

    def backward(self, gy):
        need_x, need_w = self.inputs[0].requires_grad, self.inputs[1].requires_grad
        need_b = len(self.inputs) == 3 and self.inputs[2].requires_grad
        gx, gw, gb = self._backward(gy, need_x, need_w, need_b)
        return (gx, gw) if len(self.inputs) == 2 else (gx, gw, gb)

    def _chunks(self, rows_per_sample: int, widest: int):
        """(first sample, end sample, first row, end row) per chunk of samples whose scratch
        (rows_per_sample rows of `widest` values each) fits CHUNK_BYTES, in a count of chunks
        that the CPU's threads share evenly."""
        n = self.x.shape[0]
        sample_bytes = rows_per_sample * widest * self.dtype.itemsize
        on_cpu = _xp(self.x) is np
        largest = max(1, (CHUNK_BYTES if on_cpu else GPU_SCRATCH_BYTES) // sample_bytes)
        count = -(-n // largest)
        if on_cpu:
            threads = parallel.threads()
            count = min(n, -(-count // threads) * threads)
        bounds = [n * i // count for i in range(count + 1)]
        self.chunk = max(b - a for a, b in zip(bounds, bounds[1:]))
        self.chunk_rows = self.chunk * rows_per_sample
        return [(n0, n1, n0 * rows_per_sample, n1 * rows_per_sample)
                for n0, n1 in zip(bounds, bounds[1:])]

    def _scratch(self, columns, dtype):
        """A chunk's scratch rows, `columns` wide, for one thread."""
        return workspace.take(_xp(self.x), (self.chunk_rows, columns), dtype)

    def _map(self, work):
        """work(group of chunk spans) for each thread's group, on the CPU's threads at once;
        the results in order."""
        return parallel.map_groups(work, self.spans, parallel=_xp(self.x) is np)

    def _forward(self, x, w, b, out_rows):
        raise NotImplementedError

    def _backward(self, gy, need_x, need_w, need_b):
        raise NotImplementedError


class Conv2DPatches(_Conv2D):
    """im2col + one product per chunk. The patches are kept for the weight gradient when they are
    small and rebuilt chunk by chunk when they are not (writing a large patch matrix out to memory
    and reading it back costs more than rebuilding it from cache)."""

    def __call__(self, x, w, b=None):
        # the weight gradient is the only one that needs the patches again
        self.weight_grad = is_grad_enabled() and isinstance(w, Tensor) and w.requires_grad
        return super().__call__(x, w) if b is None else super().__call__(x, w, b)

    def _forward(self, x, w, b, out_rows):
        xp, n = _xp(x), x.shape[0]
        self.wmat = self._weight_matrix(w)
        self.positions, taps = out_rows.shape[0] // n, self.wmat.shape[1]
        self.spans = self._chunks(self.positions, taps)
        keep_limit = KEEP_PATCHES_BYTES if xp is np else GPU_SCRATCH_BYTES
        keep = self.weight_grad and n * self.positions * taps * self.dtype.itemsize <= keep_limit
        cols = workspace.take(xp, (n * self.positions, taps), self.dtype) if keep else None

        def work(spans):
            scratch = None if keep else self._scratch(taps, self.dtype)
            for n0, n1, r0, r1 in spans:
                patches = cols[r0:r1] if keep else scratch[:r1 - r0]
                self._patches(x, patches, n0, n1)
                rows = out_rows[r0:r1]
                dense_kernels.matmul(patches, self.wmat.T, out=rows)
                dense_kernels.bias_activation(rows, b, "relu" if self.relu else None)

        self._map(work)
        self.cols = cols

    def _backward(self, gy, need_x, need_w, need_b):
        xp, o = _xp(gy), self.w_shape[0]
        if self.relu:
            gy = dense_kernels.activation_gradient(gy, self.y, "relu")
        gy_rows = gy.transpose(0, 2, 3, 1).reshape(-1, o)  # a view for channels-last gy
        rebuild = need_w and self.cols is None
        gw_mat = dense_kernels.matmul(gy_rows.T, self.cols) if need_w and not rebuild else None
        gx = empty_images(xp, self.x.shape, gy.dtype, self.channels_last) if need_x else None

        def work(spans):  # this group's share of the weight gradient when it is rebuilt
            scratch, gw_part = self._scratch(self.wmat.shape[1], gy.dtype), None
            for n0, n1, r0, r1 in spans:
                rows = scratch[:r1 - r0]
                if rebuild:
                    self._patches(self.x, rows, n0, n1)
                    part = dense_kernels.matmul(gy_rows[r0:r1].T, rows)
                    gw_part = part if gw_part is None else xp.add(gw_part, part, out=gw_part)
                if need_x:  # patch gradients, summed back onto the pixels they came from
                    dense_kernels.matmul(gy_rows[r0:r1], self.wmat, out=rows)
                    patches_kernels.col2im(rows, gx[n0:n1], self.kernel, self.stride, self.padding,
                                           self.channels_last)
            return gw_part

        if rebuild or need_x:
            parts = self._map(work)
            if rebuild:
                gw_mat = sum_into_first(parts)
        gw = self._weight_from_matrix(gw_mat) if need_w else None
        return gx, gw, (bias_gradient(self.inputs[2], gy_rows) if need_b else None)

    def _patches(self, x, cols, n0, n1):
        patches_kernels.im2col(x, cols, n0, n1, self.kernel, self.stride, self.padding,
                               self.channels_last)

    def _weight_matrix(self, w):
        """(out, taps) in the column order of the patch matrix."""
        if self.channels_last:
            return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        return w.reshape(w.shape[0], -1)

    def _weight_from_matrix(self, gw_mat):
        o, c, kh, kw = self.w_shape
        if self.channels_last:
            return _xp(gw_mat).ascontiguousarray(gw_mat.reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
        return gw_mat.reshape(self.w_shape)


class Conv2DBlocks(_Conv2D):
    """Space-to-depth blocks + one product per chunk + shift_add (see conv_blocks.py). The
    backward pass rebuilds each chunk's block rows S from x: that is cheaper than writing the
    whole batch's S out to memory in the forward pass and reading it back."""

    def _forward(self, x, w, b, out_rows):
        (sy, sx), (kh, kw) = self.stride, self.kernel
        self.blocks = (-(-kh // sy), -(-kw // sx))
        self.grid = (self.out_hw[0] + self.blocks[0] - 1, self.out_hw[1] + self.blocks[1] - 1)
        self.block_w = self._block_weights(w)
        depth, width = self.block_w.shape
        self.spans = self._chunks(self.grid[0] * self.grid[1], max(depth, width))
        bias = b if b is not None else np.zeros(w.shape[0], dtype=self.dtype)
        positions = self.out_hw[0] * self.out_hw[1]

        def work(spans):
            S, Z = self._scratch(depth, self.dtype), self._scratch(width, self.dtype)
            for n0, n1, r0, r1 in spans:
                block_rows, z = S[:r1 - r0], Z[:r1 - r0]
                self._space_to_depth(x, block_rows, n0, n1)
                np.matmul(block_rows, self.block_w, out=z)
                blocks_kernels.shift_add(z, out_rows[n0 * positions:n1 * positions], bias, n1 - n0,
                                         self.grid, self.out_hw, self.blocks, self.relu)

        self._map(work)

    def _backward(self, gy, need_x, need_w, need_b):
        depth, width = self.block_w.shape
        gx = empty_images(np, self.x.shape, gy.dtype, self.channels_last) if need_x else None
        gy_rows = blocks_kernels.rows(gy)  # a view when gy is channels-last, else one copy
        y_rows = blocks_kernels.rows(self.y) if self.relu else None

        def work(spans):  # this group's shares of the weight and bias gradients
            dZ = self._scratch(width, gy.dtype)
            S = self._scratch(depth, gy.dtype) if need_w else None
            dS = self._scratch(depth, gy.dtype) if need_x else None
            gb = np.zeros(self.w_shape[0], dtype=gy.dtype) if need_b else None
            gw_mat = None
            for n0, n1, r0, r1 in spans:
                dz = dZ[:r1 - r0]
                blocks_kernels.spread_rows(gy_rows, y_rows, self.out_hw, dz, n0, n1, self.grid,
                                           self.blocks, gb)
                if need_w:
                    block_rows = S[:r1 - r0]
                    self._space_to_depth(self.x, block_rows, n0, n1)
                    part = block_rows.T @ dz
                    gw_mat = part if gw_mat is None else np.add(gw_mat, part, out=gw_mat)
                if need_x:
                    ds = dS[:r1 - r0]
                    np.matmul(dz, self.block_w.T, out=ds)
                    blocks_kernels.depth_to_space(ds, gx[n0:n1], self.grid, self.stride,
                                                  self.padding, self.channels_last)
            return gw_mat, gb

        gw_parts, gb_parts = zip(*self._map(work))
        gw = self._weight_from_blocks(sum_into_first(gw_parts)) if need_w else None
        return gx, gw, (sum_into_first(gb_parts) if need_b else None)

    def _space_to_depth(self, x, block_rows, n0, n1):
        blocks_kernels.space_to_depth(x, block_rows, n0, n1, self.grid, self.stride, self.padding,
                                      self.channels_last)

    def _block_layout(self):
        """Axis order of the (o, c, dy, ry, dx, rx) weight view that gives the rows of S
        ((c, ry, rx) or (ry, rx, c)) and the columns of Z ((dy, dx, o))."""
        return (3, 5, 1, 2, 4, 0) if self.channels_last else (1, 3, 5, 2, 4, 0)

    def _block_weights(self, w):
        """(c * sy * sx, qy * qx * out): the kernel zero-padded to whole blocks, rearranged."""
        (o, c, kh, kw), (sy, sx), (qy, qx) = w.shape, self.stride, self.blocks
        padded = w
        if (kh, kw) != (qy * sy, qx * sx):
            padded = np.zeros((o, c, qy * sy, qx * sx), dtype=self.dtype)
            padded[:, :, :kh, :kw] = w
        blocked = padded.reshape(o, c, qy, sy, qx, sx).transpose(self._block_layout())
        return np.ascontiguousarray(blocked).reshape(c * sy * sx, qy * qx * o)

    def _weight_from_blocks(self, gw_mat):
        (o, c, kh, kw), (sy, sx), (qy, qx) = self.w_shape, self.stride, self.blocks
        layout = self._block_layout()
        blocked_shape = tuple((o, c, qy, sy, qx, sx)[axis] for axis in layout)
        padded = gw_mat.reshape(blocked_shape).transpose(np.argsort(layout))
        return np.ascontiguousarray(padded.reshape(o, c, qy * sy, qx * sx)[:, :, :kh, :kw])


def _blocks_pay(x, w_shape, stride) -> bool:
    """Whether the space-to-depth method is the faster one for this call (CPU arrays only)."""
    if _xp(x) is not np or getattr(x, "ndim", 0) != 4 or len(w_shape) != 4:
        return False
    (sy, sx), (kh, kw) = stride, w_shape[2:]
    padded_taps = -(-kh // sy) * sy * -(-kw // sx) * sx
    return (sy * sx > 1 and x.shape[1] * sy * sx >= BLOCKS_MIN_DEPTH
            and padded_taps <= BLOCKS_MAX_WASTE * kh * kw)


def conv2d(x, w, b=None, stride=1, padding=0, activation=None):
    """2-D convolution (cross-correlation) of x (n, in, h, w) with w (out, in, kh, kw) and bias b,
    followed by `activation` (None or "relu", fused into the op)."""
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    data = x.data if isinstance(x, Tensor) else x
    method = Conv2DBlocks if _blocks_pay(data, w.shape, stride) else Conv2DPatches
    op = method(stride, padding, activation)
    return op(x, w) if b is None else op(x, w, b)
