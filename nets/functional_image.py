"""Image ops beyond convolution and pooling: transposed convolution, upsampling, and the spatial
transformer's affine grid and bilinear sampler. Re-exported from `nets.functional`.

Image batches are (batch, channels, height, width), in any memory layout; the transposed
convolution and the sampler write channels-last memory, like conv2d.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .functional import matmul, reshape, transpose
from .functional_conv import check_images, empty_images, out_size, pair
from .kernels import conv as patches_kernels
from .kernels import sampler as sampler_kernels
from .kernels import workspace
from .tensor import Function, Tensor

_xp = backend.get_array_module


def _data(x):
    return x.data if isinstance(x, Tensor) else x


# -- transposed convolution --------------------------------------------------------------------
class ConvTranspose2D(Function):
    """The adjoint of conv2d in its input: each input pixel scatters its channels through the
    kernel onto a (stride)-spaced window of the output. Forward is conv2d's input gradient
    (one product, then col2im), backward is conv2d's forward (im2col, then one product), so it
    reuses the conv kernels on every device.

    x (n, in, h, w), w (in, out, kh, kw) (the weight of the conv2d it inverts, which maps out
    channels to in), b (out,). Output size: (h - 1) * stride - 2 * padding + kh + output_padding.
    """

    def __init__(self, stride, padding, output_padding):
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.output_padding = pair(output_padding, "output_padding")
        if not all(0 <= op < s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"conv_transpose2d: output_padding must be in [0, stride) on each "
                                 f"axis, got {self.output_padding} with stride {self.stride}")

    def forward(self, x, w, b=None):
        check_images(x, "conv_transpose2d")
        if w.ndim != 4 or w.shape[0] != x.shape[1]:
            raise ValueError(f"conv_transpose2d: weight {w.shape} does not fit input {x.shape}; "
                             f"expected ({x.shape[1]}, out_channels, kernel_h, kernel_w)")
        if b is not None and b.shape != (w.shape[1],):
            raise ValueError(f"conv_transpose2d: bias has shape {b.shape}, expected ({w.shape[1]},)")
        xp = _xp(x)
        n, cin, h, wd = x.shape
        _, cout, kh, kw = w.shape
        (sy, sx), (py, px), (qy, qx) = self.stride, self.padding, self.output_padding
        size = ((h - 1) * sy - 2 * py + kh + qy, (wd - 1) * sx - 2 * px + kw + qx)
        if min(size) < 1:
            raise ValueError(f"conv_transpose2d: padding {self.padding} leaves no output for a "
                             f"{h}x{wd} input and a {kh}x{kw} kernel")
        self.kernel, self.x_shape, self.w_shape = (kh, kw), x.shape, w.shape
        self.dtype = np.result_type(x.dtype, w.dtype)
        self.x_rows = x.transpose(0, 2, 3, 1).reshape(-1, cin)  # a view for channels-last x
        self.w = w
        cols = workspace.take(xp, (n * h * wd, kh * kw * cout), self.dtype)
        xp.matmul(self.x_rows, self._weight_matrix(w, True), out=cols)
        y = empty_images(xp, (n, cout, *size), self.dtype, channels_last=True)
        patches_kernels.col2im(cols, y, self.kernel, self.stride, self.padding, True)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        xp = _xp(gy)
        n, cin, h, wd = self.x_shape
        hwc = patches_kernels.is_channels_last(gy)
        cols = workspace.take(xp, (n * h * wd, gy.shape[1] * self.kernel[0] * self.kernel[1]), gy.dtype)
        patches_kernels.im2col(gy, cols, 0, n, self.kernel, self.stride, self.padding, hwc)
        w_mat = self._weight_matrix(self.w, hwc)
        gx = gw = None
        if self.inputs[0].requires_grad:
            gx = (cols @ w_mat.T).reshape(n, h, wd, cin).transpose(0, 3, 1, 2)
        if self.inputs[1].requires_grad:
            gw = self._weight_from_matrix(self.x_rows.T @ cols, hwc)
        if len(self.inputs) == 2:
            return gx, gw
        return gx, gw, gy.sum(axis=(0, 2, 3))

    @staticmethod
    def _weight_matrix(w, hwc: bool):
        """(in, taps), the taps in im2col's column order: (ky, kx, out) or (out, ky, kx)."""
        return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1) if hwc else w.reshape(w.shape[0], -1)

    def _weight_from_matrix(self, gw_mat, hwc: bool):
        cin, cout, kh, kw = self.w_shape
        if hwc:
            return _xp(gw_mat).ascontiguousarray(gw_mat.reshape(cin, kh, kw, cout).transpose(0, 3, 1, 2))
        return gw_mat.reshape(self.w_shape)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution ("deconvolution", fractionally strided convolution) of x
    (n, in, h, w) with w (in, out, kh, kw) and bias b (out,)."""
    op = ConvTranspose2D(stride, padding, output_padding)
    return op(x, w) if b is None else op(x, w, b)


def conv_transpose_size(size: int, kernel: int, stride: int, padding: int, output_padding: int = 0) -> int:
    """The output length of conv_transpose2d along one axis (what conv2d would map back to `size`)."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


# -- upsampling --------------------------------------------------------------------------------
class UpsampleNearest(Function):
    """Each pixel repeated into a (sy, sx) block; the gradient sums each block."""

    def __init__(self, scale):
        self.scale = pair(scale, "scale")
        if min(self.scale) < 1:
            raise ValueError(f"upsample scale must be >= 1, got {self.scale}")

    def forward(self, x):
        check_images(x, "upsample_nearest")
        n, c, h, w = x.shape
        sy, sx = self.scale
        blocks = _xp(x).broadcast_to(x[:, :, :, None, :, None], (n, c, h, sy, w, sx))
        return blocks.reshape(n, c, h * sy, w * sx)

    def backward(self, gy):
        n, c, hh, ww = gy.shape
        sy, sx = self.scale
        return gy.reshape(n, c, hh // sy, sy, ww // sx, sx).sum(axis=(3, 5))


def upsample_nearest(x, scale):
    """(n, c, h, w) -> (n, c, h * sy, w * sx) by repeating pixels (`scale` an int or a pair)."""
    return UpsampleNearest(scale)(x)


def interpolation_matrix(size_in: int, size_out: int, xp=np, dtype=np.float32):
    """(size_out, size_in) linear-interpolation weights with pixel centres aligned as in
    PyTorch's align_corners=False (edges clamp)."""
    src = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    src = np.clip(src, 0, size_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = src - lo
    a = np.zeros((size_out, size_in))
    np.add.at(a, (np.arange(size_out), lo), 1 - frac)
    np.add.at(a, (np.arange(size_out), hi), frac)
    return xp.asarray(a, dtype=dtype)


def resize_bilinear(x, size):
    """(n, c, h, w) -> (n, c, H, W) by bilinear interpolation (align_corners=False): two products
    with interpolation matrices, one per axis, so the gradient is their transposes."""
    data = _data(x)
    check_images(data, "resize_bilinear")
    (hh, ww), xp = pair(size, "size"), _xp(data)
    rows = interpolation_matrix(data.shape[2], hh, xp, data.dtype)
    cols = interpolation_matrix(data.shape[3], ww, xp, data.dtype)
    return matmul(rows, matmul(x, cols.T))


def upsample_bilinear(x, scale):
    """Bilinear upsampling by an integer `scale` (an int or a pair)."""
    sy, sx = pair(scale, "scale")
    return resize_bilinear(x, (x.shape[2] * sy, x.shape[3] * sx))


# -- spatial transformer: affine grid and bilinear sampler ---------------------------------------
def base_grid(height: int, width: int, xp=np, dtype=np.float32):
    """(height * width, 3) rows [x, y, 1] of normalised pixel-centre coordinates, row-major."""
    xs = (2 * np.arange(width) + 1) / width - 1
    ys = (2 * np.arange(height) + 1) / height - 1
    gx, gy = np.meshgrid(xs, ys)
    return xp.asarray(np.stack([gx.ravel(), gy.ravel(), np.ones(height * width)], axis=1), dtype=dtype)


def affine_grid(theta, size):
    """Source coordinates (n, H, W, 2) of an (H, W) output under affine maps theta (n, 2, 3):
    [x_s, y_s] = theta @ [x_t, y_t, 1] in normalised coordinates (-1, 1 the image's outer edges)."""
    data = _data(theta)
    if data.ndim != 3 or data.shape[1:] != (2, 3):
        raise ValueError(f"affine_grid expects theta of shape (batch, 2, 3), got {tuple(data.shape)}")
    height, width = pair(size, "size")
    base = base_grid(height, width, _xp(data), data.dtype)
    return reshape(matmul(base, transpose(theta, (0, 2, 1))), (data.shape[0], height, width, 2))


class GridSample(Function):
    """Bilinear sampling of x (n, c, h, w) at grid (n, H, W, 2) (see nets/kernels/sampler.py for
    the coordinate convention); zeros outside the image. Gradients to both x and the grid."""

    def forward(self, x, grid):
        check_images(x, "grid_sample")
        if grid.ndim != 4 or grid.shape[3] != 2 or grid.shape[0] != x.shape[0]:
            raise ValueError(f"grid_sample: grid must be (batch={x.shape[0]}, height, width, 2), "
                             f"got {tuple(grid.shape)}")
        self.x, self.grid = x, grid
        xp = _xp(x)
        shape = (x.shape[0], x.shape[1], grid.shape[1], grid.shape[2])
        dtype = np.result_type(x.dtype, grid.dtype)
        if xp is np:
            out = empty_images(xp, shape, dtype, channels_last=True)
            sampler_kernels.sample_forward(x, grid, out)
            return out
        return sample_reference(x, grid)

    def backward(self, gy):
        need_x = self.inputs[0].requires_grad
        if _xp(gy) is not np:
            gx, ggrid = sample_reference_backward(self.x, self.grid, gy)
            return (gx if need_x else None), ggrid
        gx = np.zeros(self.x.shape, dtype=gy.dtype)
        ggrid = np.empty(self.grid.shape, dtype=gy.dtype)
        sampler_kernels.sample_backward(self.x, self.grid, gy, gx, ggrid, need_x)
        return (gx if need_x else None), ggrid


def grid_sample(x, grid):
    """Bilinear samples of images x (n, c, h, w) at normalised coordinates grid (n, H, W, 2)."""
    return GridSample()(x, grid)


def _corners(x, grid):
    """For each of the four source corners: (weight (n, H, W), inside mask, clipped y, x)."""
    xp = _xp(x)
    height, width = x.shape[2], x.shape[3]
    px = ((grid[..., 0] + 1) * width - 1) / 2
    py = ((grid[..., 1] + 1) * height - 1) / 2
    x0, y0 = xp.floor(px), xp.floor(py)
    tx, ty = px - x0, py - y0
    corners = []
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = (y0 + dy).astype(np.int64), (x0 + dx).astype(np.int64)
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            wy, wx = (ty if dy else 1 - ty), (tx if dx else 1 - tx)
            corners.append((dy, dx, wy, wx, inside, xp.clip(yy, 0, height - 1), xp.clip(xx, 0, width - 1)))
    return corners


def sample_reference(x, grid):
    """grid_sample's forward in plain array code (the GPU path, and the CPU kernel's reference)."""
    xp = _xp(x)
    batch = xp.arange(x.shape[0])[:, None, None]
    out = 0
    for _, _, wy, wx, inside, yy, xx in _corners(x, grid):
        out = out + (wy * wx * inside)[..., None] * x[batch, :, yy, xx]  # (n, H, W, c)
    return out.transpose(0, 3, 1, 2).astype(np.result_type(x.dtype, grid.dtype))


def sample_reference_backward(x, grid, gy):
    """grid_sample's gradients (to x, to the grid) in plain array code."""
    xp = _xp(x)
    height, width = x.shape[2], x.shape[3]
    batch = xp.broadcast_to(xp.arange(x.shape[0])[:, None, None], grid.shape[:3])
    g = gy.transpose(0, 2, 3, 1)  # (n, H, W, c)
    gx = xp.zeros((x.shape[0], height, width, x.shape[1]), dtype=gy.dtype)
    d_tx = d_ty = 0
    for dy, dx, wy, wx, inside, yy, xx in _corners(x, grid):
        weight = (wy * wx * inside)[..., None]
        if xp is np:
            np.add.at(gx, (batch, yy, xx), weight * g)
        else:
            xp.add.at(gx, (batch, yy, xx), weight * g)
        v = (g * x[batch, :, yy, xx]).sum(axis=-1) * inside
        d_tx = d_tx + v * wy * (1 if dx else -1)
        d_ty = d_ty + v * wx * (1 if dy else -1)
    ggrid = xp.stack([d_tx * (width / 2), d_ty * (height / 2)], axis=-1).astype(gy.dtype)
    return gx.transpose(0, 3, 1, 2), ggrid
