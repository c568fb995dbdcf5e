"""Images in TensorBoard: tile a batch into one grid and write it as a PNG image summary.

The PNG is encoded here (zlib and struct, 8-bit greyscale) so that image summaries need no
imaging library; tensorboardX's own add_image would import Pillow.
"""
from __future__ import annotations

import math
import struct
import zlib

import numpy as np


def tile(images, columns: int | None = None, gap: int = 1, scale_each: bool = False) -> np.ndarray:
    """Images (n, h, w) in a grid of `columns` (default: about square), `gap` black pixels apart.

    Values are taken as [0, 1] intensities (clipped), or with `scale_each` each image is
    stretched over [0, 1] by its own range (for filters, whose scale is arbitrary).
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"tile expects a non-empty (n, height, width) batch, got shape {images.shape}")
    n, h, w = images.shape
    if scale_each:
        low = images.min(axis=(1, 2), keepdims=True)
        span = images.max(axis=(1, 2), keepdims=True) - low
        images = (images - low) / np.where(span > 0, span, 1)
    columns = min(n, columns or math.ceil(math.sqrt(n)))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * (h + gap) - gap, columns * (w + gap) - gap))
    for i in range(n):
        r, c = divmod(i, columns)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = images[i]
    return np.clip(grid, 0, 1)


def png(image) -> bytes:
    """An (h, w) array of [0, 1] values as an 8-bit greyscale PNG file."""
    pixels = np.round(np.clip(np.asarray(image, dtype=np.float64), 0, 1) * 255).astype(np.uint8)
    if pixels.ndim != 2:
        raise ValueError(f"png expects an (height, width) image, got shape {pixels.shape}")
    height, width = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


def add_image(events, tag: str, image, step: int) -> None:
    """Write an (h, w) [0, 1] image to TensorBoard (the Images tab) through a logs.EventWriter."""
    from tensorboardX.proto.summary_pb2 import Summary

    image = np.asarray(image)
    summary = Summary(value=[Summary.Value(tag=tag, image=Summary.Image(
        height=image.shape[0], width=image.shape[1], colorspace=1, encoded_image_string=png(image)))])
    events.writer._get_file_writer().add_summary(summary, step)
