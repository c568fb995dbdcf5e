"""`resnet`: a small residual network (He et al. 2015; pre-activation blocks of He et al. 2016,
stochastic depth of Huang et al. 2016) or DenseNet (Huang et al. 2017) on greyscale images read
from IDX files named like MNIST's (MNIST, Fashion-MNIST, or any set written in that format).

The default is the CIFAR-style ResNet of depth 6n + 2 = 8: a 3x3 stem of --width maps, three
stages of n residual blocks of widths (w, 2w, 4w), the later two halving the map, global average
pooling and a softmax layer; trained by SGD with Nesterov momentum, weight decay 1e-4 and a
linearly annealed rate (the paper trains CIFAR-10 with momentum 0.9, 1e-4 and rate 0.1 stepped
down). --augment shifts each training image by up to 2 pixels (zero padding, random crop).
"""
from __future__ import annotations

import numpy as np

from nets.layers.residual import SHORTCUTS, DenseNet, resnet
from workbench import training
from workbench.recipes import Recipe, common, register, vision

PAD = 2  # the largest shift of --augment, pixels


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
    group = parser.add_argument_group("model")
    common.flag(group, "--arch", default="resnet", choices=("resnet", "densenet"), help="network family")
    common.flag(group, "--depth", default=8, type=int, help="ResNet depth 6n + 2 (8, 14, 20, 32, ...)")
    common.flag(group, "--width", default=16, type=int, help="ResNet: maps of the first stage")
    common.flag(group, "--preactivation", default=False, action="store_true",
                help="ResNet: BN-ReLU-conv blocks (He et al. 2016)")
    common.flag(group, "--shortcut", default="auto", choices=SHORTCUTS,
                help="ResNet: auto = identity where shapes agree, else a 1x1 projection; "
                     "identity = subsample and zero-pad the new channels (option A)")
    common.flag(group, "--survival", default=1.0, type=float,
                help="ResNet: stochastic depth, the last block's survival probability (1: off)")
    common.flag(group, "--growth", default=12, type=int, help="DenseNet: growth rate")
    common.flag(group, "--dense-blocks", default="4,4,4", metavar="N,N,...",
                help="DenseNet: layers per dense block")
    common.flag(group, "--augment", default=False, action="store_true",
                help=f"shift training images by up to {PAD} pixels")
    common.add_training_flags(parser, epochs=10, batch_size=128, optimizer="nesterov", lr=0.1,
                              schedule="linear", lr_floor=0.001, weight_decay=1e-4, patience=5)


def run(args) -> int:
    common.setup(args)
    splits = vision.load(args, images=True)
    channels = splits["train"][0].shape[1]
    try:
        if args.arch == "resnet":
            model = resnet(args.depth, channels, 10, args.width, preactivation=args.preactivation,
                           shortcut=args.shortcut, survival=args.survival)
            what = (f"ResNet-{args.depth} ({'pre-activation, ' if args.preactivation else ''}"
                    f"widths {args.width}/{2 * args.width}/{4 * args.width})")
        else:
            blocks = vision.sizes(args.dense_blocks, "--dense-blocks")
            model = DenseNet(channels, 10, args.growth, blocks)
            what = f"DenseNet (growth {args.growth}, blocks {blocks})"
    except ValueError as error:  # the builders name the bad setting
        raise common.RecipeError(str(error)) from None
    run_folder = common.open_run(args, "resnet")
    task_class = AugmentedTask if args.augment else common.ClassificationTask
    task = task_class(model, splits, args.batch_size)
    optimizer = common.make_optimizer(model, args)
    print(f"resnet: {what}, {model.num_parameters():,} parameters; {len(splits['train'][0])} "
          f"training, {len(splits['val'][0])} validation, {len(splits['test'][0])} test images")
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta={"recipe": "resnet"})
    common.report(run_folder, result, [f"test accuracy: {100 * result.test['accuracy']:.2f}% "
                                       f"(error {100 * (1 - result.test['accuracy']):.2f}%)"])
    return 0


register(Recipe("resnet", "small ResNet (pre-activation, stochastic depth) or DenseNet on "
                "IDX images such as MNIST", add_arguments, run, details=__doc__))
