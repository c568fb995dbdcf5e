"""Numba kernels against plain NumPy versions of the same contract (written here, loop by loop)."""
import numpy as np
import pytest

from nets.kernels import conv, pool, workspace
from nets.kernels.embedding import scatter_add


# -- plain references ----------------------------------------------------------------------------
def ref_im2col(x, kernel, stride, padding, channels_last):
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (py, py), (px, px)))
    oh, ow = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    rows = []
    for i in range(n):
        for oy in range(oh):
            for ox in range(ow):
                patch = padded[i, :, oy * sy:oy * sy + kh, ox * sx:ox * sx + kw]  # (c, kh, kw)
                rows.append(patch.transpose(1, 2, 0).ravel() if channels_last else patch.ravel())
    return np.array(rows)


def ref_col2im(cols, x_shape, kernel, stride, padding, channels_last):
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    n, c, h, w = x_shape
    padded = np.zeros((n, c, h + 2 * py, w + 2 * px), dtype=cols.dtype)
    oh, ow = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    row = 0
    for i in range(n):
        for oy in range(oh):
            for ox in range(ow):
                if channels_last:
                    patch = cols[row].reshape(kh, kw, c).transpose(2, 0, 1)
                else:
                    patch = cols[row].reshape(c, kh, kw)
                padded[i, :, oy * sy:oy * sy + kh, ox * sx:ox * sx + kw] += patch
                row += 1
    return padded[:, :, py:py + h, px:px + w]


def ref_pool(x, kernel, stride, reduce):
    (kh, kw), (sy, sx) = kernel, stride
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sy + 1, (w - kw) // sx + 1
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            out[:, :, oy, ox] = reduce(x[:, :, oy * sy:oy * sy + kh, ox * sx:ox * sx + kw], axis=(2, 3))
    return out


def ref_max_pool_backward(x, gy, kernel, stride):
    """Each window's gradient goes to its first maximum (row-major within the window)."""
    (kh, kw), (sy, sx) = kernel, stride
    gx = np.zeros_like(x)
    for i in range(x.shape[0]):
        for ch in range(x.shape[1]):
            for oy in range(gy.shape[2]):
                for ox in range(gy.shape[3]):
                    window = x[i, ch, oy * sy:oy * sy + kh, ox * sx:ox * sx + kw]
                    ky, kx = np.unravel_index(np.argmax(window), window.shape)
                    gx[i, ch, oy * sy + ky, ox * sx + kx] += gy[i, ch, oy, ox]
    return gx


def ref_avg_pool_backward(x_shape, gy, kernel, stride):
    (kh, kw), (sy, sx) = kernel, stride
    gx = np.zeros(x_shape, dtype=gy.dtype)
    for oy in range(gy.shape[2]):
        for ox in range(gy.shape[3]):
            window = gx[:, :, oy * sy:oy * sy + kh, ox * sx:ox * sx + kw]
            window += gy[:, :, oy:oy + 1, ox:ox + 1] / (kh * kw)
    return gx


def channels_last_copy(x):
    """The same values in channels-last memory under the (n, c, h, w) shape."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


# -- conv ----------------------------------------------------------------------------------------
CONV_CASES = [  # x shape, kernel, stride, padding
    ((2, 3, 9, 8), (3, 3), (1, 1), (1, 1)),
    ((1, 4, 20, 20), (8, 8), (4, 4), (0, 0)),
    ((3, 2, 7, 6), (2, 3), (2, 1), (1, 2)),
    ((2, 5, 6, 6), (1, 1), (1, 1), (0, 0)),
    ((1, 2, 5, 5), (5, 5), (1, 1), (2, 2)),
]


@pytest.mark.parametrize("shape,kernel,stride,padding", CONV_CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_im2col_matches_reference(rng, shape, kernel, stride, padding, channels_last):
    x = rng.standard_normal(shape).astype(np.float32)
    if channels_last:
        x = channels_last_copy(x)
    expected = ref_im2col(x, kernel, stride, padding, channels_last)
    cols = np.full(expected.shape, np.nan, dtype=np.float32)
    conv.im2col(x, cols, 0, shape[0], kernel, stride, padding, channels_last)
    np.testing.assert_array_equal(cols, expected)


def test_im2col_fills_a_chunk_of_samples(rng):
    x = rng.standard_normal((5, 2, 6, 6)).astype(np.float32)
    expected = ref_im2col(x[2:4], (3, 3), (1, 1), (0, 0), False)
    cols = np.empty_like(expected)
    conv.im2col(x, cols, 2, 4, (3, 3), (1, 1), (0, 0), False)
    np.testing.assert_array_equal(cols, expected)


@pytest.mark.parametrize("shape,kernel,stride,padding", CONV_CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_col2im_matches_reference(rng, shape, kernel, stride, padding, channels_last):
    rows = ref_im2col(np.zeros(shape), kernel, stride, padding, channels_last).shape
    cols = rng.standard_normal(rows)
    expected = ref_col2im(cols, shape, kernel, stride, padding, channels_last)
    dx = np.full(shape, np.nan)
    if channels_last:
        dx = channels_last_copy(dx)
    conv.col2im(cols, dx, kernel, stride, padding, channels_last)
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)


def test_channels_last_is_detected():
    x = np.zeros((2, 3, 4, 5), dtype=np.float32)
    assert not conv.is_channels_last(x)
    assert conv.is_channels_last(channels_last_copy(x))


# -- pooling -------------------------------------------------------------------------------------
POOL_CASES = [  # x shape, kernel, stride (overlapping and not, odd sizes with a remainder)
    ((2, 3, 8, 8), (2, 2), (2, 2)),
    ((1, 2, 7, 9), (3, 3), (2, 2)),
    ((2, 1, 5, 6), (2, 3), (1, 2)),
]


@pytest.mark.parametrize("shape,kernel,stride", POOL_CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool_matches_reference(rng, shape, kernel, stride, channels_last):
    x = rng.standard_normal(shape)
    x[0, 0, :2, :2] = 1.5  # a tie: the first maximum wins in both versions
    if channels_last:
        x = channels_last_copy(x)
    expected = ref_pool(x, kernel, stride, np.max)
    out = np.empty(expected.shape)
    argmax = np.empty(expected.shape, dtype=np.int32)
    if channels_last:
        out, argmax = channels_last_copy(out), channels_last_copy(argmax)
    pool.max_pool_forward(x, out, argmax, kernel, stride, channels_last)
    np.testing.assert_array_equal(out, expected)
    gy = rng.standard_normal(expected.shape)
    gx = np.full(shape, np.nan)
    if channels_last:
        argmax, gy, gx = (channels_last_copy(a) for a in (argmax, gy, gx))
    pool.max_pool_backward(gy, argmax, gx, kernel, stride, channels_last)
    np.testing.assert_allclose(gx, ref_max_pool_backward(x, gy, kernel, stride), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,kernel,stride", POOL_CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_avg_pool_matches_reference(rng, shape, kernel, stride, channels_last):
    x = rng.standard_normal(shape)
    if channels_last:
        x = channels_last_copy(x)
    expected = ref_pool(x, kernel, stride, np.mean)
    out = np.empty(expected.shape)
    if channels_last:
        out = channels_last_copy(out)
    pool.avg_pool_forward(x, out, kernel, stride, channels_last)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(expected.shape)
    gx = np.full(shape, np.nan)
    if channels_last:
        gy, gx = channels_last_copy(gy), channels_last_copy(gx)
    pool.avg_pool_backward(gy, gx, kernel, stride, channels_last)
    expected_gx = ref_avg_pool_backward(shape, gy, kernel, stride)
    np.testing.assert_allclose(gx, expected_gx, rtol=1e-12, atol=1e-12)


# -- embedding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_add_matches_add_at_with_repeats(rng, dtype):
    table = rng.standard_normal((6, 4)).astype(dtype)
    indices = np.array([0, 3, 3, 5, 0, 0, 2])
    rows = rng.standard_normal((7, 4)).astype(dtype)
    expected = table.copy()
    np.add.at(expected, indices, rows)
    scatter_add(table, indices, rows)
    np.testing.assert_allclose(table, expected, rtol=1e-6)


# -- workspace -----------------------------------------------------------------------------------
def test_workspace_reuses_only_released_buffers():
    first = workspace.take(np, (7, 3), np.float32)
    second = workspace.take(np, (7, 3), np.float32)
    assert second is not first  # `first` is still held here
    view = second[:2]
    del second
    third = workspace.take(np, (7, 3), np.float32)
    assert third is not view.base  # a live view keeps its buffer taken
    first_id = id(first)
    del first
    assert id(workspace.take(np, (7, 3), np.float32)) == first_id


# -- GPU versions (same contract; skipped without CuPy and a device) ------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("shape,kernel,stride,padding", CONV_CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_im2col_and_col2im_match_cpu(rng, shape, kernel, stride, padding, channels_last):
    from nets import backend
    cp = backend.cupy_module()
    x = rng.standard_normal(shape).astype(np.float32)
    if channels_last:
        x = channels_last_copy(x)
    expected = ref_im2col(x, kernel, stride, padding, channels_last)
    cols = cp.empty(expected.shape, dtype=cp.float32)
    x_gpu = cp.asarray(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2) \
        if channels_last else cp.asarray(x)
    conv.im2col(x_gpu, cols, 0, shape[0], kernel, stride, padding, channels_last)
    np.testing.assert_array_equal(cp.asnumpy(cols), expected)
    dx = cp.empty(shape, dtype=cp.float32)
    conv.col2im(cols, dx, kernel, stride, padding, channels_last)
    np.testing.assert_allclose(cp.asnumpy(dx), ref_col2im(expected, shape, kernel, stride, padding,
                                                          channels_last), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("shape,kernel,stride", POOL_CASES)
def test_gpu_pooling_matches_cpu(rng, shape, kernel, stride):
    from nets import backend
    cp = backend.cupy_module()
    x = rng.standard_normal(shape).astype(np.float32)
    expected = ref_pool(x, kernel, stride, np.max)
    out, argmax = cp.empty(expected.shape, cp.float32), cp.empty(expected.shape, cp.int32)
    pool.max_pool_forward(cp.asarray(x), out, argmax, kernel, stride, False)
    np.testing.assert_array_equal(cp.asnumpy(out), expected)
    gy = rng.standard_normal(expected.shape).astype(np.float32)
    gx = cp.empty(shape, cp.float32)
    pool.max_pool_backward(cp.asarray(gy), argmax, gx, kernel, stride, False)
    np.testing.assert_allclose(cp.asnumpy(gx), ref_max_pool_backward(x, gy, kernel, stride), rtol=1e-6)
    pool.avg_pool_forward(cp.asarray(x), out, kernel, stride, False)
    np.testing.assert_allclose(cp.asnumpy(out), ref_pool(x, kernel, stride, np.mean), rtol=1e-5)
    pool.avg_pool_backward(cp.asarray(gy), gx, kernel, stride, False)
    np.testing.assert_allclose(cp.asnumpy(gx), ref_avg_pool_backward(shape, gy, kernel, stride),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_gpu_embedding_scatter_add_matches_cpu(rng):
    from nets import backend
    cp = backend.cupy_module()
    table = np.zeros((5, 3), dtype=np.float32)
    indices, rows = np.array([4, 0, 4]), rng.standard_normal((3, 3)).astype(np.float32)
    on_gpu = cp.asarray(table)
    scatter_add(on_gpu, cp.asarray(indices), cp.asarray(rows))
    scatter_add(table, indices, rows)
    np.testing.assert_allclose(cp.asnumpy(on_gpu), table, rtol=1e-6)
