"""An animated GIF written frame by frame, for `workbench play --record`."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import GifImagePlugin, Image


class GifWriter:
    """Writes an animated GIF frame by frame, so that memory holds a frame or two however long
    the clip (Pillow's and imageio's GIF writers keep every frame until the file is saved).

    One palette for the whole clip, of the colours exactly as they come, each kept at the index it
    first got: Atari frames use a few of the console's 128 colours and CartPole's 234 over its
    episodes, so both are exact. Past 256 colours (anti-aliased edges at every angle: Pendulum's
    frames hold about 2,000) a new colour takes its nearest in the palette. The palette is written
    into the header when the file is closed. As Pillow does, identical consecutive frames are
    merged, their durations added, and each frame stores only the rectangle where it differs from
    the one before."""

    HEADER = 13  # bytes before the global colour table: "GIF89a", screen size, flags
    LONGEST_DELAY = 65_535  # centiseconds: a GIF delay is 16 bits

    def __init__(self, path: Path, height: int, width: int, fps: int):
        self.file = open(path, "wb")
        self.fps, self.played = fps, 0  # frames written so far, repeats included
        self.palette = np.zeros((256, 3), np.uint8)
        self.colours = 0
        # packed RGB -> palette index + 1 (0: not seen yet): one lookup per pixel, for 32 MiB
        # however long the clip (a sorted search was 30 times slower)
        self.index_of = np.zeros(1 << 24, np.uint16)
        self.shown = None  # the picture the GIF shows after the frames written so far
        self.pending, self.repeats = None, 0  # the newest frame, not written yet, and its count
        self.file.write(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7, 0, 0))
        self.file.write(bytes(256 * 3))  # the palette's place
        self.file.write(b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00")  # loop forever

    def append_data(self, frame: np.ndarray) -> None:
        indices = self._indices(frame)
        if self.pending is not None and np.array_equal(indices, self.pending):
            self.repeats += 1
            return
        self._write_pending()
        self.pending, self.repeats = indices, 1

    def close(self) -> None:
        """Writes the last frame, the trailer and the palette."""
        try:
            self._write_pending()
            self.file.write(b";")
            self.file.seek(self.HEADER)
            self.file.write(self.palette.tobytes())
        finally:
            self.file.close()

    def _indices(self, frame: np.ndarray) -> np.ndarray:
        """The frame's pixels as palette indices; its colours not seen before get their places."""
        rgb = frame.astype(np.uint32)
        packed = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
        indices = self.index_of[packed]
        unseen = indices == 0
        if unseen.any():
            self._place(np.unique(packed[unseen]), frame[unseen])
            indices = self.index_of[packed]
        return (indices - 1).astype(np.uint8)

    def _place(self, colours: np.ndarray, pixels: np.ndarray) -> None:
        """Palette indices for new `colours` (packed), seen in `pixels` (RGB): places of their own
        while they fit, else the nearest of the palette. Where more come at once than there are free
        places (a shaded 3D scene's first frame), the free places take a median cut of the pixels:
        colours spread over the scene, not the first few."""
        free = 256 - self.colours
        if len(colours) <= free:
            self.palette[self.colours:self.colours + len(colours)] = unpack(colours)
            self.index_of[colours] = np.arange(self.colours + 1, self.colours + len(colours) + 1)
            self.colours += len(colours)
            return
        if free:
            cut = Image.fromarray(pixels[None]).quantize(free, method=Image.Quantize.MEDIANCUT)
            chosen = np.reshape(cut.getpalette()[:3 * free], (-1, 3))
            self.palette[self.colours:self.colours + len(chosen)] = chosen
            self.colours = 256  # places the cut left are black, as the colours mapped to them show
        palette = Image.new("P", (1, 1))
        palette.putpalette(self.palette.tobytes())
        nearest = Image.fromarray(unpack(colours)[None]).quantize(palette=palette, dither=Image.Dither.NONE)
        self.index_of[colours] = np.asarray(nearest)[0].astype(np.uint16) + 1

    def _write_pending(self) -> None:
        if self.pending is None:
            return
        # delays are whole centiseconds: rounded on the clip's clock, so that 30 fps is not 10% fast
        start, self.played = self.played, self.played + self.repeats
        delay = round(self.played * 100 / self.fps) - round(start * 100 / self.fps)
        top, left, bottom, right = 0, 0, *self.pending.shape
        if self.shown is not None:  # the rectangle that changed; disposal 1 keeps the rest shown
            changed = self.pending != self.shown
            rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
            top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        self._write_image(self.pending[top:bottom, left:right], left, top, min(delay, self.LONGEST_DELAY))
        for rest in range(delay - self.LONGEST_DELAY, 0, -self.LONGEST_DELAY):  # a longer still:
            self._write_image(self.pending[:1, :1], 0, 0, min(rest, self.LONGEST_DELAY))  # one pixel again
        self.shown = self.pending

    def _write_image(self, indices: np.ndarray, left: int, top: int, centiseconds: int) -> None:
        image = Image.fromarray(indices, mode="P")
        chunks = GifImagePlugin.getdata(image, (int(left), int(top)), disposal=1, duration=10 * centiseconds)
        self.file.write(b"".join(chunks))
        # the list belongs to a class getdata makes for each call, which only the cyclic garbage
        # collector frees: emptied, it holds no frame's bytes until then
        chunks.clear()


def unpack(colours: np.ndarray) -> np.ndarray:
    """RGB rows of packed 0xRRGGBB colours."""
    return np.stack([colours >> 16, colours >> 8 & 255, colours & 255], axis=1).astype(np.uint8)
