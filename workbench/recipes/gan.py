"""`mnist-gan`: a generative adversarial network on MNIST (Goodfellow et al. 2014; Deep Learning
with Theano ch. 12), with the improvements the book follows: the DCGAN architecture (Radford et
al. 2016: strided (transposed) convolutions, batch norm, leaky ReLU in the discriminator, Adam
with beta1 = 0.5, tanh outputs on pixels scaled to [-1, 1]), the non-saturating generator loss,
one-sided label smoothing, and optionally feature matching (Salimans et al. 2016).

Each step updates the discriminator once on a real and a generated batch, then the generator
once. TensorBoard: losses/discriminator and losses/generator, charts/d_real and charts/d_fake
(the mean probability the discriminator gives real and generated images; about 0.5 for both is
the equilibrium), and after every epoch the samples of a fixed batch of noise in the Images tab
(also written to RUN/images/). The validation metrics are the discriminator's loss and outputs on
held-out digits; the best-epoch logic does not apply to a GAN, so the last parameters are kept.
"""
from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

import nets
from logs import Window
from nets.gan import ARCHITECTURES, GAN, GANOptimizers
from workbench import training
from workbench.datasets import minibatches
from workbench.recipes import Recipe, common, register, vision


class GANTask:
    """One step: a discriminator update inside `loss`, whose return value (the generator's loss)
    the shared loop backpropagates and applies through GANOptimizers.step (the generator's)."""

    monitor = ("loss", "min")

    def __init__(self, gan: GAN, optimizers: GANOptimizers, splits: dict, args, run):
        self.model, self.optimizers, self.splits = gan, optimizers, splits
        self.batch_size, self.smoothing = args.batch_size, args.smoothing
        self.feature_matching, self.log_every = args.feature_matching, args.log_every
        self.run, self.events, self.window = run, None, Window()
        self.shape = splits["train"][0].shape[2:]

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits["train"][0]) / self.batch_size)

    def batches(self, rng):
        return minibatches((self.splits["train"][0],), self.batch_size, rng)

    def loss(self, batch):
        real = batch[0]
        gan = self.model
        with nets.no_grad():
            fake = gan.generator(gan.sample_noise(len(real))).data
        d_loss, d_real, d_fake = gan.discriminator_loss(real, fake, self.smoothing)
        self.optimizers.step_discriminator(d_loss)
        self.optimizers.zero_grad()
        g_loss = gan.generator_loss(gan.sample_noise(len(real)), real, self.feature_matching)
        self.window.add_all("losses", {"discriminator": d_loss.item(), "generator": g_loss.item()})
        self.window.add_all("charts", {"d_real": d_real, "d_fake": d_fake})
        step = self.optimizers.steps + 1  # the step this batch completes
        if self.events is not None and step % self.log_every == 0:
            self.events.scalars(self.window.drain(), step)
        return g_loss

    def evaluate(self, split: str) -> dict[str, float]:
        if split not in self.splits:
            return {}
        real = self.splits[split][0][:1000]
        gan = self.model
        fake = gan.generate(len(real))
        loss, d_real, d_fake = gan.discriminator_loss(real, fake)
        return {"loss": loss.item(), "d_real": d_real, "d_fake": d_fake,
                "generator_loss": gan.generator_loss(gan.fixed_noise).item()}

    def end_of_epoch(self, events, epoch: int, step: int) -> None:
        samples = (self.model.generate()[:, 0] + 1) / 2
        vision.log_images(events, self.run, "samples/generated", samples, step)
        if epoch == 1:
            real = (self.splits["val"][0][:len(samples), 0] + 1) / 2
            vision.log_images(events, self.run, "samples/real", real, step)


def add_arguments(parser) -> None:
    vision.add_data_flags(parser, validation=1000)
    group = parser.add_argument_group("model")
    common.flag(group, "--arch", default="conv", choices=ARCHITECTURES,
                help="conv: DCGAN-style (transposed) convolutions; mlp: fully connected players")
    common.flag(group, "--width", default=16, type=int, rule=">= 1",
                help="channels of the discriminator's first conv (the generator's last hidden "
                     "map has 2x, its first 4x); for mlp, hidden layers of 8x and 16x units")
    common.flag(group, "--noise", default=100, type=int, rule=">= 1", help="size of the noise vector z")
    common.flag(group, "--smoothing", default=0.1, type=float, rule="in [0, 1)",
                help="one-sided label smoothing: real images' target is 1 - this")
    common.flag(group, "--feature-matching", default=False, action="store_true",
                help="generator loss: match the discriminator's mean features instead of -log D(G(z))")
    common.flag(group, "--d-lr", default=None, type=float, rule=">= 0",
                help="discriminator learning rate (default: --lr)")
    common.flag(group, "--beta1", default=0.5, type=float, rule="in [0, 1)",
                help="Adam's first-moment decay (DCGAN: 0.5)")
    common.add_training_flags(parser, epochs=5, batch_size=64, optimizer="adam", lr=2e-4)


def _player_optimizer(args):
    def make(flat, player: str):
        lr = args.d_lr if player == "discriminator" and args.d_lr is not None else args.lr
        if args.optimizer == "adam":
            return nets.optim.Adam(flat, lr, beta1=args.beta1, weight_decay=args.weight_decay, l1=args.l1)
        return common.make_optimizer(flat, argparse.Namespace(**{**vars(args), "lr": lr}))
    return make


def run(args) -> int:
    common.setup(args)
    if args.clip:
        raise common.RecipeError("mnist-gan cannot clip gradients (two players share the step); "
                                 "leave out --clip")
    splits = vision.load(args, images=True)
    splits = {name: (x * np.float32(2) - np.float32(1), y) for name, (x, y) in splits.items()}
    _, channels, height, width = splits["train"][0].shape
    if height != width or (args.arch == "conv" and height % 4):
        raise common.RecipeError(f"mnist-gan needs square images (divisible by 4 for --arch conv), "
                                 f"got {height}x{width}")
    gan = GAN(args.noise, height, channels, args.width, args.arch).to(args.device)
    optimizers = GANOptimizers(gan, _player_optimizer(args))
    run_folder = common.open_run(args, "mnist-gan")
    task = GANTask(gan, optimizers, splits, args, run_folder)
    print(f"mnist-gan: {args.arch} generator {gan.generator.num_parameters():,} and discriminator "
          f"{gan.discriminator.num_parameters():,} parameters; {len(splits['train'][0])} training images")
    config = dataclasses.replace(common.fit_config(args), restore_best=False)
    with common.events_for(run_folder) as events:
        task.events = events
        result = training.fit(task, optimizers, config, run_folder, events, resume=bool(args.resume),
                              meta={"recipe": "mnist-gan"})
    val = result.val
    common.report(run_folder, result, [
        f"discriminator on held-out digits: D(real) {val['d_real']:.3f}, D(generated) {val['d_fake']:.3f}",
        f"samples: {run_folder.path / 'images' / 'samples-generated.png'}"])
    return 0


register(Recipe("mnist-gan", "DCGAN-style GAN on MNIST (label smoothing, feature matching); "
                "samples as images", add_arguments, run, details=__doc__))
