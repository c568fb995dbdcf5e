"""`mnist-sequence`: a recurrent spatial transformer reads the 3 digits of a 100x100 image, one
affine crop per digit (Deep Learning with Theano, ch. 6; Sønderby et al. 2015, after Ba et al.).

Data: made from the MNIST files as the book's create_mnist_sequence.py makes them. Each canvas
holds 3 digits side by side, the row moved left or right and up or down at random and slanted
(each next digit up to 14 pixels higher or lower), plus 8 distortions: 9x9 pieces of other digits
at random places. Training canvases use the training digits less the held-out --validation
ones, validation canvases those, test canvases the test digits (--train-size and --eval-size
canvases, seeded).

Model (the book's): a localisation trunk (max-pool 2, conv 5x5 - pool 2, twice) reads the canvas;
its features feed a GRU over 3 steps, and each step's state gives an affine transform (starting
at the identity) through which a bilinear sampler crops the canvas to 33x33 (--crop; the book's
downsampling by 3); one classifier (conv 5x5 - pool 2, twice, dense 400, softmax) reads every
crop. Two departures from the book, both for a start off the plateau of "the same whole canvas
for every digit": the transform head's steps are scaled down (TRANSFORM_SCALE), and the default
optimizer is Adam at 1e-3 (--optimizer rmsprop --lr 0.0005 for the book's). Batch 100, gradient
norm clipped at 5, early stopping after 50 epochs without progress, as in the book. Metrics:
per-digit accuracy (the book's log reaches 97.9% test at epoch 53) and the share of canvases
with all 3 digits right.
TensorBoard's Images tab (and RUN/images/) shows validation canvases and the 3 crops of each.
"""
from __future__ import annotations

import numpy as np

import nets
from nets import F
from workbench import training
from workbench.recipes import Recipe, common, register, vision

PIECE = 9  # side of a distortion: a piece of another digit
# The transform head sees the GRU's states scaled by this: its steps move the crops a tenth as far
# (STNs usually give the localisation net a lower rate). At full scale, the first hundred steps
# moved the crops off the digits before the classifier could send any useful gradient back.
TRANSFORM_SCALE = 0.1


def make_sequences(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator,
                   canvas: int = 100, digits: int = 3, distortions: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(canvases uint8 (count, 1, canvas, canvas), labels (count, digits)) from digit images
    uint8 (n, size, size), as the book's create_mnist_sequence.py lays them out."""
    n, size, _ = images.shape
    margin = (canvas - digits * size) // 2
    if margin < 1:
        raise common.RecipeError(f"a {canvas}x{canvas} canvas cannot hold {digits} digits of {size} pixels")
    picks = rng.integers(n, size=(count, digits))
    out = np.zeros((count, canvas, canvas), dtype=np.uint8)
    noise = np.zeros((canvas, canvas), dtype=np.uint16)
    for k in range(count):
        noise[:] = 0
        for _ in range(distortions):
            sy, sx = rng.integers(size - PIECE, size=2)
            ty, tx = rng.integers(canvas - PIECE, size=2)
            noise[ty:ty + PIECE, tx:tx + PIECE] = images[rng.integers(n), sy:sy + PIECE, sx:sx + PIECE]
        left = margin + rng.integers(-margin, margin)
        top, slant = rng.integers(canvas), rng.integers(-size // 2, size // 2)
        for i, pick in enumerate(picks[k]):
            y = min(max(top + i * slant, 0), canvas - size)
            out[k, y:y + size, left + i * size:left + (i + 1) * size] = images[pick]
        out[k] = np.minimum(out[k] + noise, 255)
    return out[:, None], labels[picks]


class RecurrentSTN(nets.Module):
    """Localisation trunk -> GRU over `digits` steps -> one affine transform per step -> a crop
    per step -> one shared classifier. Input: uint8 or [0, 1] canvases (batch, 1, side, side);
    output: logits (batch * digits, 10), digit by digit."""

    def __init__(self, canvas: int = 100, digits: int = 3, locator=(32, 32), hidden: int = 256,
                 filters=(32, 32), dense: int = 400, crop: int = 33, dropout: float = 0.0):
        super().__init__()
        self.digits, self.crop = digits, crop
        side = _after_conv_pools(canvas // 2, 2)
        small = _after_conv_pools(crop, 2)
        if side < 1 or small < 1:
            raise common.RecipeError(f"a {canvas}x{canvas} canvas and {crop}x{crop} crops are too small "
                                     f"for two 5x5 convolutions and poolings")
        self.locator = nets.Sequential(
            nets.MaxPool2D(2), nets.Conv2D(1, locator[0], 5, activation="relu"), nets.MaxPool2D(2),
            nets.Conv2D(locator[0], locator[1], 5, activation="relu"), nets.MaxPool2D(2), nets.Flatten())
        self.gru = nets.GRU(locator[1] * side * side, hidden)
        self.affine = nets.Linear(hidden, 6, initializer=nets.init.zeros)
        self.affine.bias.data[:] = np.array([1, 0, 0, 0, 1, 0], dtype=np.float32)  # the whole canvas
        self.classifier = nets.Sequential(
            nets.Conv2D(1, filters[0], 5, activation="relu"), nets.MaxPool2D(2),
            nets.Conv2D(filters[0], filters[1], 5, activation="relu"), nets.MaxPool2D(2), nets.Flatten(),
            nets.Dropout(dropout), nets.Linear(filters[1] * small * small, dense, initializer=nets.init.he_normal),
            F.relu, nets.Dropout(dropout), nets.Linear(dense, 10))

    def crops(self, x):
        """(batch * digits, 1, crop, crop): the canvases seen through each step's transform."""
        x = np.asarray(x)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255)
        features = self.locator(x)
        steps = F.stack([features] * self.digits, axis=1)  # the same view of the canvas each step
        states, _ = self.gru(steps)
        theta = F.reshape(self.affine(states * TRANSFORM_SCALE), (x.shape[0] * self.digits, 2, 3))
        grid = F.affine_grid(theta, (self.crop, self.crop))
        return F.grid_sample(np.repeat(x, self.digits, axis=0), grid)

    def forward(self, x):
        return self.classifier(self.crops(x))


def _after_conv_pools(size: int, times: int) -> int:
    for _ in range(times):
        size = (size - 4) // 2
    return size


class SequenceTask(common.ClassificationTask):
    """Softmax cross-entropy over every digit; labels (n, digits)."""

    monitor = ("accuracy", "max")

    def __init__(self, model, splits, batch_size, run):
        super().__init__(model, splits, batch_size, eval_batch=200)
        self.run = run

    def loss(self, batch):
        x, y = batch
        return F.softmax_cross_entropy(self.model(x), y.reshape(-1))

    def evaluate(self, split):
        if split not in self.splits:
            return {}
        x, y = self.splits[split]
        logits = self.logits(x)
        right = (logits.argmax(axis=1) == y.reshape(-1)).reshape(y.shape)
        return {"loss": common.softmax_loss(logits, y.reshape(-1)), "accuracy": float(right.mean()),
                "sequence_accuracy": float(right.all(axis=1).mean())}

    def end_of_epoch(self, events, epoch: int, step: int) -> None:
        canvases = self.splits["val"][0][:8]
        vision.log_images(events, self.run, "sequence/canvases", canvases[:, 0] / 255, step, columns=4)
        crops = self.model.crops(canvases).data[:, 0]  # 8 canvases x 3 crops, a row each
        vision.log_images(events, self.run, "sequence/crops", crops, step, columns=self.model.digits)


def add_arguments(parser) -> None:
    vision.add_data_flags(parser)
    group = parser.add_argument_group("canvases")
    common.flag(group, "--train-size", default=60000, type=int, rule=">= 1", help="training canvases made")
    common.flag(group, "--eval-size", default=10000, type=int, rule=">= 1",
                help="validation and test canvases made, each")
    group = parser.add_argument_group("model")
    common.flag(group, "--locator", default="32,32", metavar="N,N", help="channels of the localisation convs")
    common.flag(group, "--hidden", default=256, type=int, rule=">= 1", help="GRU units")
    common.flag(group, "--filters", default="32,32", metavar="N,N", help="channels of the classifier's convs")
    common.flag(group, "--dense", default=400, type=int, rule=">= 1",
                help="units of the classifier's dense layer")
    common.flag(group, "--crop", default=33, type=int, rule=">= 1", help="side of each digit's crop, pixels")
    common.flag(group, "--dropout", default=0.0, type=float, rule="in [0, 1)",
                help="dropout in the classifier")
    common.add_training_flags(parser, epochs=300, batch_size=100, optimizer="adam", lr=0.001,
                              clip=5.0, patience=50)


def run(args) -> int:
    common.setup(args)
    locator, filters = vision.sizes(args.locator, "--locator"), vision.sizes(args.filters, "--filters")
    for flag, values in (("--locator", locator), ("--filters", filters)):
        if len(values) != 2:
            raise common.RecipeError(f"{flag} takes two channel counts, got {values}")
    digits = vision.load(args, images=True)
    rng = np.random.default_rng(args.seed)
    splits = {}
    for split, count in (("train", args.train_size), ("val", args.eval_size), ("test", args.eval_size)):
        x, y = digits[split]
        splits[split] = make_sequences(np.round(x[:, 0] * 255).astype(np.uint8), y, count, rng)
    model = RecurrentSTN(locator=tuple(locator), hidden=args.hidden, filters=tuple(filters),
                         dense=args.dense, crop=args.crop, dropout=args.dropout)
    run_folder = common.open_run(args, "mnist-sequence")
    task = SequenceTask(model, splits, args.batch_size, run_folder)
    optimizer = common.make_optimizer(model, args)
    print(f"mnist-sequence: {len(splits['train'][0])} training, {len(splits['val'][0])} validation and "
          f"{len(splits['test'][0])} test canvases of 3 digits; {model.num_parameters():,} parameters")
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta={"recipe": "mnist-sequence"})
    test = result.test
    common.report(run_folder, result, [f"test: {100 * test['accuracy']:.2f}% of the digits right, "
                                       f"{100 * test['sequence_accuracy']:.2f}% of the canvases"])
    return 0


register(Recipe("mnist-sequence", "recurrent spatial transformer reading 3 distorted MNIST digits on "
                "a 100x100 canvas", add_arguments, run, details=__doc__))
