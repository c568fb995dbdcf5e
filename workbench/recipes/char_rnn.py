"""`char-rnn`: a character-level language model (Karpathy's char-rnn; the seed essay's
next-letter predictor) with an LSTM, GRU or plain RNN, trained by truncated backpropagation
through time with the state carried from one batch to the next.

The text is cut in order into training, validation and test parts (Project Gutenberg's header
and license are dropped when their markers are present). Metrics: loss in nats per character,
bits per character and next-letter accuracy (how often the most likely next character is the
one that follows). After each epoch a sample is written to the console and to TensorBoard's
text tab.

Generation: `--generate N` prints N characters after training, or, with `--from RUN_OR_CHECKPOINT`,
from a trained run without training (the checkpoint holds the architecture and vocabulary),
starting from --seed-text at --temperature (0: always the most likely character), with
optional --top-k, through nets.sampling.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

import nets
from nets import F, checkpoint, sampling
from workbench import downloads, training
from workbench.datasets import Vocabulary, bptt_batches, read_text
from workbench.recipes import Recipe, common, register, trained
from workbench.recipes.text import strip_gutenberg
from workbench.runs import RunDir

CELLS = {"lstm": nets.LSTM, "gru": nets.GRU, "rnn": nets.RNN}
ARCHITECTURE = ("cell", "hidden", "layers", "embed", "dropout")


class CharRNN(nets.Module):
    """Embedding -> recurrent layers -> dropout -> dense softmax over the vocabulary."""

    def __init__(self, vocabulary: int, cell: str = "lstm", hidden: int = 256, layers: int = 2,
                 embed: int = 64, dropout: float = 0.0):
        super().__init__()
        self.embed = nets.Embedding(vocabulary, embed, initializer=lambda s: nets.init.normal(s, 0.1))
        self.rnn = CELLS[cell](embed, hidden, num_layers=layers, dropout=dropout)
        self.drop = nets.Dropout(dropout)
        self.head = nets.Linear(hidden, vocabulary)

    def forward(self, ids, state=None):
        """ids (batch, time) -> (logits (batch, time, vocabulary), final state)."""
        out, state = self.rnn(self.embed(ids), state)
        return self.head(self.drop(out)), state

    def step(self, ids, state=None):
        """ids (batch,) -> (logits (batch, vocabulary), state): one character, for generation."""
        h, state = self.rnn.step(self.embed(ids), state)
        return self.head(h), state


def generate(model: CharRNN, vocab: Vocabulary, seed_text: str, length: int, temperature: float,
             seed: int, top_k: int | None = None) -> str:
    """`length` characters following `seed_text` (nets.sampling); the same seed gives the same
    text. --seed-text is checked here, where the vocabulary is known, so that errors name it
    (--temperature and --top-k have rules, checked by `common.setup`)."""
    unknown = sorted(set(seed_text) - set(vocab.index))
    if unknown:
        raise common.RecipeError(f"--seed-text has characters the model never saw: {unknown}")
    if not seed_text:
        raise common.RecipeError("--seed-text must hold at least one character")
    was_training = model.training
    model.eval()
    text = sampling.generate(model.step, vocab, seed_text, length, temperature, top_k, rng=seed)
    model.train(was_training)
    return text


class CharTask:
    """Truncated BPTT over a character stream with the state carried across batches; the state
    starts from zeros at each epoch and at each evaluation."""

    monitor = ("loss", "min")
    cross_entropy = True  # a loss that training lowers: fit warns when it climbs

    def __init__(self, model: CharRNN, vocab: Vocabulary, parts: dict, batch_size: int,
                 seq_len: int, sample: dict | None = None):
        self.model, self.vocab, self.parts = model, vocab, parts
        self.batch_size, self.seq_len, self.sample = batch_size, seq_len, sample
        self.state = None

    def steps_per_epoch(self) -> int:
        return ((len(self.parts["train"]) - 1) // self.batch_size) // self.seq_len

    def batches(self, rng):
        self.state = None
        return bptt_batches(self.parts["train"], self.batch_size, self.seq_len)

    def loss(self, batch):
        x, y = batch
        logits, state = self.model(x, self.state)
        self.state = nets.detach_state(state)
        return F.softmax_cross_entropy(logits, y)

    def evaluate(self, split: str) -> dict[str, float]:
        ids = self.parts.get(split)
        if ids is None or len(ids) == 0:
            return {}
        rows = max(1, min(self.batch_size, (len(ids) - 1) // self.seq_len))
        nll, correct, count, state = 0.0, 0, 0, None
        for x, y in bptt_batches(ids, rows, self.seq_len):
            logits, state = self.model(x, state)
            z = nets.backend.to_host(logits.data).reshape(-1, len(self.vocab)).astype(np.float64)
            z -= z.max(axis=1, keepdims=True)
            log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            target = y.reshape(-1)
            nll -= log_probs[np.arange(len(target)), target].sum()
            correct += int((z.argmax(axis=1) == target).sum())
            count += len(target)
        loss = nll / count
        return {"loss": loss, "bits_per_char": loss / math.log(2), "accuracy": correct / count}

    def end_of_epoch(self, events, epoch, step):
        if not self.sample or not self.sample["length"]:
            return
        text = generate(self.model, self.vocab, self.sample["seed_text"], self.sample["length"],
                        self.sample["temperature"], self.sample["seed"] + epoch, self.sample["top_k"])
        events.writer.add_text("samples", _markdown(self.sample["seed_text"], text), step)
        tqdm.write(f"--- sample after epoch {epoch} ---\n{self.sample['seed_text']}{text}\n---")


def _markdown(seed_text: str, text: str) -> str:
    """TensorBoard renders text as Markdown: a code block keeps the line breaks."""
    return "```\n" + (seed_text + text).replace("```", "'''") + "\n```"


def split_text(ids: np.ndarray, val_fraction: float, test_fraction: float) -> dict:
    """Training, validation and test parts, in that order (no shuffling: the state is carried)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise common.RecipeError(f"--val-fraction and --test-fraction must be in [0, 1) and sum "
                                 f"below 1, got {val_fraction} and {test_fraction}")
    n = len(ids)
    val_start = int(round(n * (1 - val_fraction - test_fraction)))
    test_start = int(round(n * (1 - test_fraction)))
    return {"train": ids[:val_start], "val": ids[val_start:test_start], "test": ids[test_start:]}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("data and model")
    common.flag(group, "--text", default="tiny-shakespeare", metavar="FILE", path=True,
                help=f"a plain UTF-8 text file, or tiny-shakespeare: Karpathy's corpus, downloaded "
                     f"once into {downloads.where('tiny-shakespeare')}")
    common.flag(group, "--cell", default="lstm", choices=tuple(CELLS), help="recurrent cell")
    common.flag(group, "--hidden", default=256, type=int, rule=">= 1", help="units per recurrent layer")
    common.flag(group, "--layers", default=2, type=int, rule=">= 1", help="stacked recurrent layers")
    common.flag(group, "--embed", default=64, type=int, rule=">= 1", help="character embedding size")
    common.flag(group, "--dropout", default=0.1, type=float, rule="in [0, 1)",
                help="dropout between layers and before the softmax")
    common.flag(group, "--seq-len", default=100, type=int, rule=">= 1",
                help="time steps per truncated-BPTT window")
    common.flag(group, "--val-fraction", default=0.05, type=float, rule="in [0, 1)",
                help="share of the text for validation")
    common.flag(group, "--test-fraction", default=0.05, type=float, rule="in [0, 1)",
                help="share of the text for testing")
    gen = parser.add_argument_group("generation")
    common.flag(gen, "--generate", default=0, type=int, rule=">= 0", metavar="N",
                help="print N generated characters (after training, or from --from without training)")
    common.flag(gen, "--from", default=None, metavar="RUN_OR_CHECKPOINT", path=True, dest="source",
                help="generate from this trained run folder or checkpoint file instead of training: "
                     "--generate characters, else --sample-length")
    common.flag(gen, "--temperature", default=0.8, type=float, rule=">= 0",
                help="sampling temperature: lower is safer, higher more varied, 0 the most likely")
    common.flag(gen, "--top-k", default=None, type=int, rule=">= 1",
                help="draw only among the k most likely characters (default: all)")
    common.flag(gen, "--seed-text", default="\n", help="text the generation continues")
    common.flag(gen, "--sample-length", default=200, type=int, rule=">= 0",
                help="characters sampled after each epoch (0: none)")
    common.add_training_flags(parser, epochs=20, batch_size=32, optimizer="adam", lr=0.002,
                              clip=5.0, schedule="plateau", plateau_patience=0, lr_floor=1e-4,
                              patience=3)


def load_generator(source: str) -> tuple[CharRNN, Vocabulary, Path, RunDir | None]:
    """The model and vocabulary in a char-rnn run folder (its best checkpoint, else its latest)
    or checkpoint file, and the run folder when there is one."""
    path, meta, run = trained.find(source, "char-rnn")
    vocab = Vocabulary.from_json(meta["vocab"])
    model = CharRNN(len(vocab), **{k: meta["model"][k] for k in ARCHITECTURE})
    checkpoint.load(path, model)
    return model, vocab, path, run


def run_generation(args) -> int:
    model, vocab, path, run = load_generator(args.source)
    length = args.generate or args.sample_length
    text = generate(model, vocab, args.seed_text, length, args.temperature, args.seed, args.top_k)
    print(args.seed_text + text)
    if run is not None:
        with common.events_for(run) as events:
            events.writer.add_text("generated", _markdown(args.seed_text, text),
                                   checkpoint.read(path)[0]["meta"].get("step", 0))
    return 0


def run(args) -> int:
    common.setup(args)
    if args.source:
        return run_generation(args)
    text = strip_gutenberg(read_text(downloads.text_file(args.text)))
    vocab = Vocabulary.of_chars(text)
    parts = split_text(vocab.encode(text), args.val_fraction, args.test_fraction)
    if len(parts["train"]) - 1 < args.batch_size * args.seq_len:
        raise common.RecipeError(f"the training part of {args.text} has {len(parts['train'])} "
                                 f"characters, fewer than --batch-size x --seq-len = "
                                 f"{args.batch_size * args.seq_len}; lower them")
    architecture = {k: getattr(args, k) for k in ARCHITECTURE}
    model = CharRNN(len(vocab), **architecture)
    sample = {"length": args.sample_length, "seed_text": args.seed_text,
              "temperature": args.temperature, "top_k": args.top_k, "seed": args.seed}
    task = CharTask(model, vocab, parts, args.batch_size, args.seq_len, sample)
    optimizer = common.make_optimizer(model, args)
    print(f"char-rnn: {len(vocab)} characters; {len(parts['train']):,} training, "
          f"{len(parts['val']):,} validation, {len(parts['test']):,} test; "
          f"{model.num_parameters():,} parameters")
    run_folder = common.open_run(args, "char-rnn")
    meta = {"recipe": "char-rnn", "model": architecture, "vocab": vocab.to_json()}
    lines = []
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta=meta)
        if args.generate:
            generated = generate(model, vocab, args.seed_text, args.generate, args.temperature,
                                 args.seed, args.top_k)
            events.writer.add_text("generated", _markdown(args.seed_text, generated), result.steps)
            print(args.seed_text + generated)
    for split, metrics in (("val", result.val), ("test", result.test)):
        if metrics:
            lines.append(f"{split}: {metrics['loss']:.4f} nats/char, {metrics['bits_per_char']:.4f} "
                         f"bits/char, next-letter accuracy {100 * metrics['accuracy']:.2f}%")
    common.report(run_folder, result, lines)
    return 0


register(Recipe("char-rnn", "character-level LSTM/GRU/RNN language model with text generation",
                add_arguments, run, details=__doc__))
