"""`resnet`: a small residual network (He et al. 2015; pre-activation blocks of He et al. 2016,
stochastic depth of Huang et al. 2016) or DenseNet (Huang et al. 2017) on greyscale images read
from IDX files named like MNIST's (MNIST, Fashion-MNIST, or any set written in that format).

The default is the CIFAR-style ResNet of depth 6n + 2 = 8: a 3x3 stem of --width maps, three
stages of n residual blocks of widths (w, 2w, 4w), the later two halving the map, global average
pooling and a softmax layer; trained by SGD with Nesterov momentum, weight decay 1e-4 and a
linearly annealed rate (the paper trains CIFAR-10 with momentum 0.9, 1e-4 and rate 0.1 stepped
down). --augment shifts each training image by up to 2 pixels (zero padding, random crop).

--images FOLDER reads image files instead (needs Pillow): FOLDER/train/CLASS/*.png (or .jpg,
.bmp, .gif), and FOLDER/test/CLASS/* when there is a test set; the class names (sorted) are the
labels, every image must have the same size, and --channels picks greyscale (1) or RGB (3).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nets.layers.residual import SHORTCUTS, DenseNet, resnet
from workbench import training
from workbench.datasets import split_indices
from workbench.recipes import Recipe, common, register, vision

PAD = 2  # the largest shift of --augment, pixels
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_image_folder(folder: Path, channels: int, classes: list[str] | None = None):
    """(images float32 (n, channels, h, w) in [0, 1], labels, class names) of FOLDER/CLASS/*."""
    try:
        from PIL import Image
    except ImportError:
        raise common.RecipeError("--images needs Pillow: pip install pillow") from None
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    classes = classes or found
    if not classes:
        raise common.RecipeError(f"{folder} has no class folders (expected {folder}/CLASS/*.png)")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise common.RecipeError(f"{folder} has classes {unknown} that the training set lacks")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if path.suffix.lower() in SUFFIXES:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
                images.append(pixels.reshape(*pixels.shape[:2], channels).transpose(2, 0, 1) / 255)
                labels.append(label)
    if not images:
        raise common.RecipeError(f"no images ({', '.join(SUFFIXES)}) under {folder}")
    shapes = sorted({x.shape for x in images})
    if len(shapes) > 1:
        raise common.RecipeError(f"images under {folder} differ in size ({shapes[0]} and {shapes[-1]}); "
                                 f"resize them to one size first")
    return np.stack(images), np.array(labels, dtype=np.int64), classes


def load_images(args) -> tuple[dict, int]:
    """Splits from --images FOLDER (validation held out of train/) and the number of classes."""
    root = Path(args.images)
    if not (root / "train").is_dir():
        raise common.RecipeError(f"--images {root}: expected class folders under {root / 'train'}")
    x, y, classes = read_image_folder(root / "train", args.channels)
    if not 0 < args.validation < len(x):
        raise common.RecipeError(f"--validation must be between 1 and {len(x) - 1}, got {args.validation}")
    train, val = split_indices(len(x), (1 - args.validation / len(x), args.validation / len(x)), args.seed)
    if args.limit:
        train = train[:args.limit]
    splits = {"train": (x[train], y[train]), "val": (x[val], y[val])}
    if (root / "test").is_dir():
        splits["test"] = read_image_folder(root / "test", args.channels, classes)[:2]
    return splits, len(classes)


class AugmentedTask(common.ClassificationTask):
    """Classification whose training batches are randomly shifted copies of the images."""

    def batches(self, rng):
        for x, y in super().batches(rng):
            padded = np.pad(x, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))
            shifts = rng.integers(0, 2 * PAD + 1, (len(x), 2))
            h, w = x.shape[2:]
            yield np.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(shifts)]), y


def add_arguments(parser) -> None:
    vision.add_data_flags(parser)
    group = parser.add_argument_group("image folders")
    common.flag(group, "--images", default=None, metavar="FOLDER", path=True,
                help="read FOLDER/train/CLASS/* (and FOLDER/test/CLASS/*) image files instead of --data")
    common.flag(group, "--channels", default=1, type=int, rule="one of 1, 3", choices=(1, 3),
                help="--images: 1 reads greyscale, 3 reads RGB")
    group = parser.add_argument_group("model")
    common.flag(group, "--arch", default="resnet", choices=("resnet", "densenet"), help="network family")
    common.flag(group, "--depth", default=8, type=int, rule=">= 1",
                help="ResNet depth 6n + 2 (8, 14, 20, 32, ...)")
    common.flag(group, "--width", default=16, type=int, rule=">= 1", help="ResNet: maps of the first stage")
    common.flag(group, "--preactivation", default=False, action="store_true",
                help="ResNet: BN-ReLU-conv blocks (He et al. 2016)")
    common.flag(group, "--shortcut", default="auto", choices=SHORTCUTS,
                help="ResNet: auto = identity where shapes agree, else a 1x1 projection; "
                     "identity = subsample and zero-pad the new channels (option A)")
    common.flag(group, "--survival", default=1.0, type=float, rule="in (0, 1]",
                help="ResNet: stochastic depth, the last block's survival probability (1: off)")
    common.flag(group, "--growth", default=12, type=int, rule=">= 1", help="DenseNet: growth rate")
    common.flag(group, "--dense-blocks", default="4,4,4", metavar="N,N,...",
                help="DenseNet: layers per dense block")
    common.flag(group, "--augment", default=False, action="store_true",
                help=f"shift training images by up to {PAD} pixels")
    common.add_training_flags(parser, epochs=10, batch_size=128, optimizer="nesterov", lr=0.1,
                              schedule="linear", lr_floor=0.001, weight_decay=1e-4, patience=5)


def run(args) -> int:
    common.setup(args)
    if args.images and args.data:
        raise common.RecipeError("give --data (IDX files) or --images (image folders), not both")
    if args.images:
        splits, classes = load_images(args)
    else:
        splits, classes = vision.load(args, images=True), 10
    channels = splits["train"][0].shape[1]
    try:
        if args.arch == "resnet":
            model = resnet(args.depth, channels, classes, args.width, preactivation=args.preactivation,
                           shortcut=args.shortcut, survival=args.survival)
            what = (f"ResNet-{args.depth} ({'pre-activation, ' if args.preactivation else ''}"
                    f"widths {args.width}/{2 * args.width}/{4 * args.width})")
        else:
            blocks = vision.sizes(args.dense_blocks, "--dense-blocks")
            model = DenseNet(channels, classes, args.growth, blocks)
            what = f"DenseNet (growth {args.growth}, blocks {blocks})"
    except ValueError as error:  # the builders name the bad setting
        raise common.RecipeError(str(error)) from None
    run_folder = common.open_run(args, "resnet")
    task_class = AugmentedTask if args.augment else common.ClassificationTask
    task = task_class(model, splits, args.batch_size)
    optimizer = common.make_optimizer(model, args)
    test = len(splits["test"][0]) if "test" in splits else 0
    print(f"resnet: {what}, {model.num_parameters():,} parameters; {len(splits['train'][0])} "
          f"training, {len(splits['val'][0])} validation, {test} test images; {classes} classes")
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta={"recipe": "resnet"})
    split, metrics = ("test", result.test) if result.test else ("validation (no test set)", result.val)
    common.report(run_folder, result, [f"{split} accuracy: {100 * metrics['accuracy']:.2f}% "
                                       f"(error {100 * (1 - metrics['accuracy']):.2f}%)"])
    return 0


register(Recipe("resnet", "small ResNet (pre-activation, stochastic depth) or DenseNet on "
                "IDX images such as MNIST", add_arguments, run, details=__doc__))
