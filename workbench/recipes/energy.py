"""`mnist-rbm` and `mnist-dbn`: energy-based models on MNIST (Deep Learning with Theano ch. 12;
the Deep Learning Tutorials' rbm.py and DBN.py; Hinton's practical guide to training RBMs).

mnist-rbm: a binary RBM (784 visible units fed the pixel intensities as probabilities, 500
hidden) trained by persistent contrastive divergence (PCD-k, Tieleman 2008) or CD-k. The
training loss shown is the free-energy difference between the data and the negative samples,
whose gradient is the (P)CD update; what to watch is the validation reconstruction
cross-entropy (val/loss), the pseudo-log-likelihood (val/pseudo_likelihood) and the free-energy
gap between validation and training images (val/free_energy_gap: it grows when the model
overfits). TensorBoard's Images tab (and RUN/images/) shows the filters (the weights into the
first 100 hidden units), validation digits beside their reconstructions, and samples (Gibbs
chains started at validation digits).

mnist-dbn: a deep belief network: RBMs stacked on --hidden sizes are pre-trained greedily, each
on the mean-field activations of the one below (CD-k), then the stack becomes a sigmoid MLP with
a softmax layer on top and is fine-tuned with backpropagation (the course slides' recipe). Each
pre-training stage keeps its own checkpoints (checkpoints/pretrain-N/) and TensorBoard events
(pretrain-N/); --resume continues whichever stage was running.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

import nets
from nets.energy import DBN, RBM
from workbench import training
from workbench.datasets import minibatches
from workbench.recipes import Recipe, common, register, vision

MONITOR_ROWS = 1000  # images the monitors use (pseudo-likelihood and free energies are cheap)


class RBMTask:
    """Training an RBM in the shared loop: the loss of a batch is its (P)CD loss."""

    monitor = ("loss", "min")

    def __init__(self, rbm: RBM, splits: dict, batch_size: int, k: int, persistent: bool,
                 shape=None, run=None, sample_steps: int = 0):
        self.model = rbm
        self.splits, self.batch_size, self.k, self.persistent = splits, batch_size, k, persistent
        self.shape, self.run, self.sample_steps = shape, run, sample_steps

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits["train"][0]) / self.batch_size)

    def batches(self, rng):
        return minibatches((self.splits["train"][0],), self.batch_size, rng)

    def loss(self, batch):
        return self.model.cd_loss(batch[0], self.k, self.persistent)

    def evaluate(self, split: str) -> dict[str, float]:
        if split not in self.splits:
            return {}
        x = self.splits[split][0][:MONITOR_ROWS]
        train = self.splits["train"][0][:len(x)]
        free = float(self.model.free_energy(x).data.mean())
        return {"loss": self.model.reconstruction_error(x), "free_energy": free,
                "free_energy_gap": free - float(self.model.free_energy(train).data.mean()),
                "pseudo_likelihood": self.model.pseudo_likelihood(x, np.random.default_rng(0))}

    def end_of_epoch(self, events, epoch: int, step: int) -> None:
        if self.shape is None:
            return
        h, w = self.shape
        rbm = self.model
        filters = rbm.weight.data[:, :100].T.reshape(-1, h, w)
        vision.log_images(events, self.run, "rbm/filters", filters, step, scale_each=True)
        digits = self.splits["val"][0][:16]
        pairs = np.stack([digits, nets.backend.to_host(rbm.reconstruct(digits))], axis=1).reshape(-1, h, w)
        vision.log_images(events, self.run, "rbm/reconstructions", pairs, step, columns=8)
        if self.sample_steps:
            _, probs = rbm.gibbs(digits[:10], self.sample_steps)
            chain = np.concatenate([digits[:10], nets.backend.to_host(probs)]).reshape(-1, h, w)
            vision.log_images(events, self.run, "rbm/samples", chain, step, columns=10)


def _method_flags(group, k: int) -> None:
    common.flag(group, "--k", default=k, type=int, rule=">= 1", help="Gibbs steps per update (CD-k / PCD-k)")


def add_rbm_arguments(parser) -> None:
    vision.add_data_flags(parser)
    group = parser.add_argument_group("model")
    common.flag(group, "--hidden", default=500, type=int, rule=">= 1", help="hidden units")
    common.flag(group, "--method", default="pcd", choices=("cd", "pcd"),
                help="cd: chains start at the data; pcd: persistent chains")
    _method_flags(group, 1)
    common.flag(group, "--chains", default=None, type=int, rule=">= 1",
                help="persistent chains for pcd (default: --batch-size)")
    common.flag(group, "--sample-steps", default=200, type=int, rule=">= 0",
                help="Gibbs steps behind each sample image (0: no samples)")
    common.add_training_flags(parser, epochs=15, batch_size=20, optimizer="sgd", lr=0.1)


def run_rbm(args) -> int:
    common.setup(args)
    splits = vision.load(args, images=False)
    chains = args.chains if args.chains is not None else args.batch_size
    visible = splits["train"][0].shape[1]
    rbm = RBM(visible, args.hidden, chains if args.method == "pcd" else 0)
    rbm.match_visible_bias(splits["train"][0])
    run = common.open_run(args, "mnist-rbm")
    task = RBMTask(rbm, splits, args.batch_size, args.k, args.method == "pcd",
                   vision.image_shape(splits["train"][0]), run, args.sample_steps)
    optimizer = common.make_optimizer(rbm, args)
    print(f"mnist-rbm: {visible}-{args.hidden} RBM, {args.method.upper()}-{args.k}; "
          f"{len(splits['train'][0])} training, {len(splits['val'][0])} validation images")
    config = dataclasses.replace(common.fit_config(args), restore_best=False)
    with common.events_for(run) as events:
        result = training.fit(task, optimizer, config, run, events, resume=bool(args.resume),
                              meta={"recipe": "mnist-rbm"})
    test = result.test
    common.report(run, result, [f"test reconstruction cross-entropy: {test['loss']:.2f} nats per "
                                f"image; pseudo-log-likelihood {test['pseudo_likelihood']:.2f}"])
    return 0


# -- DBN -------------------------------------------------------------------------------------------
def add_dbn_arguments(parser) -> None:
    vision.add_data_flags(parser)
    group = parser.add_argument_group("model")
    common.flag(group, "--hidden", default="500,500", metavar="N[,N...]", help="sizes of the stacked RBMs")
    group = parser.add_argument_group("pre-training")
    common.flag(group, "--pretrain-epochs", default=5, type=int, rule=">= 0",
                help="epochs per RBM (0: no pre-training)")
    common.flag(group, "--pretrain-lr", default=0.05, type=float, rule=">= 0",
                help="learning rate of pre-training")
    common.flag(group, "--pretrain-batch-size", default=20, type=int, rule=">= 1",
                help="minibatch of pre-training")
    common.flag(group, "--pretrain-momentum", default=0.5, type=float, rule="in [0, 1)",
                help="momentum of pre-training")
    _method_flags(group, 1)
    common.add_training_flags(parser, epochs=10, batch_size=20, optimizer="sgd", lr=0.1)


def run_dbn(args) -> int:
    common.setup(args)
    splits = vision.load(args, images=False)
    sizes = [splits["train"][0].shape[1], *vision.sizes(args.hidden, "--hidden")]
    dbn = DBN(sizes, classes=10)
    run = common.open_run(args, "mnist-dbn")
    print(f"mnist-dbn: {'-'.join(map(str, sizes))}-10; {len(splits['train'][0])} training, "
          f"{len(splits['val'][0])} validation, {len(splits['test'][0])} test images")
    lines = []
    if args.pretrain_epochs:
        pretrain_args = dataclasses.replace(common.fit_config(args), epochs=args.pretrain_epochs,
                                            patience=None, schedule="none", restore_best=False)
        for i, rbm in enumerate(dbn.rbms):
            stage = vision.Stage(run, f"pretrain-{i + 1}")
            upward = {name: (dbn.propagate(x, i), y) for name, (x, y) in splits.items()}
            rbm.match_visible_bias(upward["train"][0])
            task = RBMTask(rbm, upward, args.pretrain_batch_size, args.k, persistent=False)
            optimizer = nets.optim.SGD(rbm, args.pretrain_lr, momentum=args.pretrain_momentum)
            print(f"pre-training RBM {i + 1}: {rbm.visible}-{rbm.hidden}, CD-{args.k}")
            events = stage.events()
            try:
                result = training.fit(task, optimizer, pretrain_args, stage, events,
                                      resume=bool(args.resume) and stage.started(),
                                      meta={"recipe": "mnist-dbn", "stage": stage.name})
            finally:
                events.close()
            lines.append(f"RBM {i + 1}: val reconstruction cross-entropy {result.val['loss']:.2f}")
    print("fine-tuning")
    task = common.ClassificationTask(dbn, splits, args.batch_size)
    optimizer = common.make_optimizer(dbn, args)
    with common.events_for(run) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run, events,
                              resume=bool(args.resume) and run.latest_checkpoint() is not None,
                              meta={"recipe": "mnist-dbn", "sizes": sizes})
    common.report(run, result, [*lines, f"test accuracy: {100 * result.test['accuracy']:.2f}% "
                                        f"(error {100 * (1 - result.test['accuracy']):.2f}%)"])
    return 0


register(Recipe("mnist-rbm", "binary RBM on MNIST by persistent CD or CD-k; filters, "
                "reconstructions and samples as images", add_rbm_arguments, run_rbm, details=__doc__))
register(Recipe("mnist-dbn", "deep belief net on MNIST: greedy RBM pre-training, then "
                "fine-tuning", add_dbn_arguments, run_dbn, details=__doc__))
