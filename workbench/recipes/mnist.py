"""`mnist-mlp` and `mnist-cnn`: digit classifiers on MNIST (or Fashion-MNIST, same file names).

mnist-mlp: 784-800-10 with ReLU by default (the one-hidden-layer net of Simard et al. 2003, the
usual 98.3-98.4% anchor), with dropout 0.2 on the pixels and 0.5 on the hidden units (Srivastava
et al. 2014): without it the net fits the training set and stops near 98.3%. `--preset book` is
the book's MLP, 784-500-10 tanh (the Deep Learning Tutorials' MLP that Deep Learning with Theano
ch. 2 follows).
mnist-cnn: the book's LeNet-style net: conv 5x5x20, max-pool 2, conv 5x5x50, max-pool 2, dense
500, softmax 10 (ReLU and dropout before the last layer by default; `--activation tanh` for the
original).

The last --validation images of a seeded shuffle of the training set are held out for validation
(early stopping, annealing); the test set is scored once, with the best parameters, at the end.
"""
from __future__ import annotations

import nets
from nets import F
from workbench import training
from workbench.datasets import PCAWhitening
from workbench.recipes import Recipe, common, register, vision

ACTIVATIONS = {"relu": F.relu, "tanh": F.tanh, "sigmoid": F.sigmoid}


class MLP(nets.Module):
    def __init__(self, sizes: list[int], activation: str = "relu", dropout: float = 0.0,
                 input_dropout: float = 0.0):
        super().__init__()
        self.activation = ACTIVATIONS[activation]
        self.input_dropout = nets.Dropout(input_dropout)
        self.dropout = nets.Dropout(dropout)
        self.layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            initializer = nets.init.he_normal if activation == "relu" else nets.init.glorot_uniform
            layer = nets.Linear(fan_in, fan_out, initializer=initializer if i < len(sizes) - 2
                                else nets.init.glorot_uniform)
            setattr(self, f"fc{i + 1}", layer)
            self.layers.append(layer)

    def forward(self, x):
        h = self.input_dropout(x)
        for layer in self.layers[:-1]:
            h = self.dropout(self.activation(layer(h)))
        return self.layers[-1](h)


class LeNet(nets.Module):
    def __init__(self, filters=(20, 50), hidden: int = 500, activation: str = "relu",
                 dropout: float = 0.5):
        super().__init__()
        self.activation = ACTIVATIONS[activation]
        self.conv1 = nets.Conv2D(1, filters[0], 5)
        self.conv2 = nets.Conv2D(filters[0], filters[1], 5)
        self.pool = nets.MaxPool2D(2)
        self.fc1 = nets.Linear(filters[1] * 4 * 4, hidden,
                               initializer=nets.init.he_normal if activation == "relu"
                               else nets.init.glorot_uniform)
        self.dropout = nets.Dropout(dropout)
        self.fc2 = nets.Linear(hidden, 10)

    def forward(self, x):
        h = self.pool(self.activation(self.conv1(x)))
        h = self.pool(self.activation(self.conv2(h)))
        h = self.dropout(self.activation(self.fc1(F.flatten(h))))
        return self.fc2(h)


def add_mlp_arguments(parser) -> None:
    vision.add_data_flags(parser)
    group = parser.add_argument_group("model")
    common.flag(group, "--preset", default="default", choices=("default", "book"),
                help="default: 784-800-10 ReLU; book: 784-500-10 tanh (the --hidden and --activation "
                     "not given)")
    common.flag(group, "--hidden", default="800", metavar="N[,N...]", help="hidden layer sizes")
    common.flag(group, "--activation", default="relu", choices=tuple(ACTIVATIONS), help="hidden units")
    common.flag(group, "--dropout", default=0.5, type=float, rule="in [0, 1)",
                help="dropout after each hidden layer")
    common.flag(group, "--input-dropout", default=0.2, type=float, rule="in [0, 1)",
                help="dropout on the pixels")
    common.flag(group, "--pca", default=0, type=int, rule=">= 0",
                help="PCA-whiten the pixels onto this many components first (0: off)")
    common.add_training_flags(parser, epochs=30, batch_size=128, optimizer="momentum", lr=0.05,
                              schedule="linear", lr_floor=0.001, patience=10)


def add_cnn_arguments(parser) -> None:
    vision.add_data_flags(parser)
    group = parser.add_argument_group("model")
    common.flag(group, "--filters", default="20,50", metavar="N,N", help="channels of the two convolutions")
    common.flag(group, "--hidden", default=500, type=int, rule=">= 1", help="units of the dense layer")
    common.flag(group, "--activation", default="relu", choices=("relu", "tanh"), help="hidden units")
    common.flag(group, "--dropout", default=0.5, type=float, rule="in [0, 1)",
                help="dropout before the output layer")
    common.add_training_flags(parser, epochs=15, batch_size=64, optimizer="momentum", lr=0.02,
                              schedule="linear", lr_floor=0.0005, patience=8)


def run_mlp(args) -> int:
    given = {"hidden": args.hidden, "activation": args.activation}  # None where not given
    common.setup(args)
    if args.preset == "book" and not args.resume:  # a resumed run's config holds what it chose
        args.hidden, args.activation = given["hidden"] or "500", given["activation"] or "tanh"
    splits = vision.load(args, images=False)
    pixels = splits["train"][0].shape[1]
    if args.pca > pixels:
        raise common.RecipeError(f"--pca must be at most the {pixels} pixels (0: off), got {args.pca}")
    if args.pca:
        pca = PCAWhitening(args.pca).fit(splits["train"][0])
        splits = {k: (pca.transform(x), y) for k, (x, y) in splits.items()}
    sizes = [splits["train"][0].shape[1], *vision.sizes(args.hidden, "--hidden"), 10]
    model = MLP(sizes, args.activation, args.dropout, args.input_dropout)
    return _train(args, model, splits, "mnist-mlp", sizes=sizes)


def run_cnn(args) -> int:
    common.setup(args)
    filters = vision.sizes(args.filters, "--filters")
    if len(filters) != 2:
        raise common.RecipeError(f"--filters takes two channel counts, got {args.filters!r}")
    splits = vision.load(args, images=True)
    if splits["train"][0].shape[2:] != (28, 28):
        raise common.RecipeError(f"mnist-cnn expects 28x28 images, got {splits['train'][0].shape[2:]}")
    model = LeNet(tuple(filters), args.hidden, args.activation, args.dropout)
    return _train(args, model, splits, "mnist-cnn")


def _train(args, model, splits, recipe: str, **meta) -> int:
    run_folder = common.open_run(args, recipe)
    task = common.ClassificationTask(model, splits, args.batch_size)
    optimizer = common.make_optimizer(model, args)
    print(f"{recipe}: {model.num_parameters():,} parameters; {len(splits['train'][0])} training, "
          f"{len(splits['val'][0])} validation, {len(splits['test'][0])} test images")
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta={"recipe": recipe, **meta})
    common.report(run_folder, result, [f"test accuracy: {100 * result.test['accuracy']:.2f}% "
                                       f"(error {100 * (1 - result.test['accuracy']):.2f}%)"])
    return 0


register(Recipe("mnist-mlp", "784-800-10 ReLU MLP on MNIST (or the book's 784-500-10 tanh); "
                "target >= 98.3% test", add_mlp_arguments, run_mlp, details=__doc__))
register(Recipe("mnist-cnn", "the book's LeNet-style CNN (conv/pool x2 + dense 500) on MNIST; "
                "target >= 99.2% test", add_cnn_arguments, run_cnn, details=__doc__))
