"""`mnist-stn`: a spatial transformer network (Jaderberg et al. 2015) on distorted MNIST.

The recipe makes the distorted digits itself: each digit is rotated by up to --rotation degrees
and moved by up to --shift pixels inside a larger --canvas (42x42 by default, as the paper's
RTS set), one fixed, seeded distortion per image. A localisation network (pool, two 5x5
convolutions, a dense layer) predicts an affine transform of each canvas; the bilinear sampler
resamples the canvas to 28x28 through it, and a small LeNet-style classifier reads the result.
The transform starts at the identity and is learned from the classification loss alone.
--no-transformer trains the same classifier on the raw canvas, for comparison. TensorBoard's
Images tab (and RUN/images/) shows validation canvases and what the transformer made of them.
"""
from __future__ import annotations

import numpy as np

import nets
from nets import F
from workbench import training
from workbench.recipes import Recipe, common, register, vision

DIGIT = 28  # the transformer's output size: the digits' own


def distort(images: np.ndarray, canvas: int, rotation: float, shift: float, rng: np.random.Generator,
            chunk: int = 1000) -> np.ndarray:
    """(n, 1, s, s) images rotated by U(-rotation, rotation) degrees and moved by U(-shift, shift)
    pixels on each axis, centred on a (canvas x canvas) black background."""
    n, _, size, _ = images.shape
    angles = np.radians(rng.uniform(-rotation, rotation, n))
    offsets = rng.uniform(-shift, shift, (n, 2)) / (canvas / 2)  # normalised canvas units
    zoom = canvas / size  # one canvas unit spans `zoom` image units
    cos, sin = np.cos(angles), np.sin(angles)
    # source = zoom * R(-angle) (target - offset): the inverse of "rotate, then move"
    rot = np.stack([np.stack([cos, sin], 1), np.stack([-sin, cos], 1)], 1) * zoom
    theta = np.concatenate([rot, -(rot @ offsets[:, :, None])], axis=2).astype(np.float32)
    out = np.empty((n, 1, canvas, canvas), np.float32)
    with nets.no_grad():
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            grid = F.affine_grid(theta[part], (canvas, canvas))
            out[part] = F.grid_sample(images[part], grid).data
    return out


def _conv_pool(size: int, kernel: int = 5, pool: int = 2) -> int:
    return (size - kernel + 1) // pool


class STNClassifier(nets.Module):
    """[spatial transformer ->] conv5x5 - pool - conv5x5 - pool - dense - softmax."""

    def __init__(self, canvas: int, transformer: bool = True, filters=(10, 20), hidden: int = 50,
                 dropout: float = 0.5):
        super().__init__()
        size = canvas
        if transformer:
            after = _conv_pool(canvas // 2) - 4  # pool, conv-pool, conv
            if after < 1:
                raise common.RecipeError(f"--canvas {canvas} is too small for the localisation net "
                                         f"(it needs at least 28)")
            localisation = nets.Sequential(
                nets.MaxPool2D(2), nets.Conv2D(1, 8, 5, activation="relu"), nets.MaxPool2D(2),
                nets.Conv2D(8, 10, 5, activation="relu"), nets.Flatten(),
                nets.Linear(10 * after * after, 32, initializer=nets.init.he_normal), F.relu)
            self.transformer = nets.SpatialTransformer(localisation, 32, (DIGIT, DIGIT))
            size = DIGIT
        else:
            self.transformer = None
        self.conv1 = nets.Conv2D(1, filters[0], 5, activation="relu")
        self.conv2 = nets.Conv2D(filters[0], filters[1], 5, activation="relu")
        self.pool = nets.MaxPool2D(2)
        side = _conv_pool(_conv_pool(size))
        self.fc1 = nets.Linear(filters[1] * side * side, hidden, initializer=nets.init.he_normal)
        self.dropout = nets.Dropout(dropout)
        self.fc2 = nets.Linear(hidden, 10)

    def forward(self, x):
        if self.transformer is not None:
            x = self.transformer(x)
        h = self.pool(self.conv2(self.pool(self.conv1(x))))
        return self.fc2(self.dropout(F.relu(self.fc1(F.flatten(h)))))


class STNTask(common.ClassificationTask):
    def __init__(self, model, splits, batch_size, run):
        super().__init__(model, splits, batch_size)
        self.run = run

    def end_of_epoch(self, events, epoch: int, step: int) -> None:
        canvases = self.splits["val"][0][:16]
        vision.log_images(events, self.run, "stn/inputs", canvases[:, 0], step, columns=8)
        if self.model.transformer is not None:
            warped = self.model.transformer(canvases).data
            vision.log_images(events, self.run, "stn/transformed", warped[:, 0], step, columns=8)


def add_arguments(parser) -> None:
    vision.add_data_flags(parser)
    group = parser.add_argument_group("distortion")
    common.flag(group, "--canvas", default=42, type=int, rule=">= 1",
                help="side of the canvas the digits are put on")
    common.flag(group, "--rotation", default=45.0, type=float, rule="in [0, 180]",
                help="largest rotation, degrees")
    common.flag(group, "--shift", default=None, type=float, rule=">= 0",
                help="largest move on each axis, pixels (default: (canvas - 28) / 2, the digit "
                     "stays on the canvas unrotated)")
    group = parser.add_argument_group("model")
    common.flag(group, "--no-transformer", default=False, action="store_true",
                help="classify the raw canvas (the baseline)")
    common.flag(group, "--filters", default="10,20", metavar="N,N", help="channels of the classifier's convs")
    common.flag(group, "--hidden", default=50, type=int, rule=">= 1",
                help="units of the classifier's dense layer")
    common.flag(group, "--dropout", default=0.5, type=float, rule="in [0, 1)",
                help="dropout before the output layer")
    common.add_training_flags(parser, epochs=10, batch_size=64, optimizer="adam", lr=1e-3, patience=5)


def run(args) -> int:
    common.setup(args)
    filters = vision.sizes(args.filters, "--filters")
    if len(filters) != 2:
        raise common.RecipeError(f"--filters takes two channel counts, got {args.filters!r}")
    splits = vision.load(args, images=True)
    size = splits["train"][0].shape[2]
    if args.canvas < size:
        raise common.RecipeError(f"--canvas must be at least the image size {size}, got {args.canvas}")
    shift = (args.canvas - size) / 2 if args.shift is None else args.shift
    rng = np.random.default_rng(args.seed)
    splits = {name: (distort(x, args.canvas, args.rotation, shift, rng), y)
              for name, (x, y) in splits.items()}
    model = STNClassifier(args.canvas, not args.no_transformer, tuple(filters), args.hidden, args.dropout)
    run_folder = common.open_run(args, "mnist-stn")
    task = STNTask(model, splits, args.batch_size, run_folder)
    optimizer = common.make_optimizer(model, args)
    kind = "classifier on the raw canvas" if args.no_transformer else "spatial transformer + classifier"
    print(f"mnist-stn: {kind}, {model.num_parameters():,} parameters; digits rotated up to "
          f"{args.rotation:g} degrees and moved up to {shift:g} pixels on a {args.canvas}x{args.canvas} "
          f"canvas; {len(splits['train'][0])} training images")
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta={"recipe": "mnist-stn"})
    common.report(run_folder, result, [f"test accuracy: {100 * result.test['accuracy']:.2f}% "
                                       f"(error {100 * (1 - result.test['accuracy']):.2f}%)"])
    return 0


register(Recipe("mnist-stn", "spatial transformer network on rotated, shifted MNIST digits "
                "(and its baseline)", add_arguments, run, details=__doc__))
