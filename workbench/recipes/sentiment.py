"""`sentiment`: three-class message polarity (positive, negative, neutral) with a bidirectional
LSTM, as in Deep Learning with Theano, ch. 5: Embedding(100) -> Bidirectional(LSTM(64)) -> the
final state of each direction -> Dense(3) -> softmax, RMSProp, batch 10, 30 epochs.

Files (--train, --dev, --test) are tab-separated, one message a line; the layout is told by the
number of fields on each line:
  6 fields: id, id, start, end, polarity, text (SemEval-2013 task 2A, the book's files)
  4 fields: id, id, polarity, text (SemEval-2013 task 2B)
  2 fields: polarity, text
Polarities are positive, negative or neutral (SemEval's objective and objective-OR-neutral count
as neutral). --synthetic N trains on N generated messages instead, whose polarity depends on a
few cue words and on a "not" before them.

Preprocessing follows the book: a tweet tokenizer on the lower-cased text, with URLs, @mentions,
#hashtags and numbers replaced by <url>, <user>, <hashtag> and <number>. The vocabulary comes from
the training file only, index 0 standing for every unknown word; messages are padded at the front
to the longest training message (longer dev/test messages keep their first words), and the padding
is masked out of the LSTM. Metrics: accuracy and macro-F1 (the mean F1 of the three classes); the
confusion matrices are in TensorBoard's Text tab. `--predict TEXT` prints the polarity of a
message after training, or, with --from, from a trained run without training.
"""
from __future__ import annotations

import re

import numpy as np

import nets
from nets import F, checkpoint
from workbench import training
from workbench.datasets import DatasetError, Vocabulary, read_text
from workbench.recipes import Recipe, common, register, trained

POLARITIES = ("positive", "negative", "neutral")
LABELS = {"positive": 0, "negative": 1, "neutral": 2, "objective": 2, "objective-or-neutral": 2}
POLARITY_FIELD = {6: 4, 4: 2, 2: 0}  # fields on a line -> which one is the polarity; text is last
LAYOUTS = "6 (id, id, start, end, polarity, text), 4 (id, id, polarity, text) or 2 (polarity, text)"
SOURCE = ("SemEval-2013 task 2 (message polarity) tab-separated files, or any polarity<TAB>text "
          "file; or --synthetic N for generated messages")
PAD = -1  # id of the front padding in the encoded arrays (masked; 0 is the unknown word)

_TOKENS = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in (
    ("url", r"https?://\S+|www\.\S+"),
    ("user", r"@\w+"),
    ("hashtag", r"#+\w[\w'-]*"),
    ("emoticon", r"[<>]?[:;=8][-o*']?[()\[\]dp/\\:}{@|]"),
    ("number", r"\d+(?:[.,:/]\d+)*"),
    ("word", r"\w+(?:'\w+)*"),
    ("punctuation", r"\.\.\.|[^\s\w]"),
)))
PLACEHOLDERS = {"url": "<url>", "user": "<user>", "hashtag": "<hashtag>", "number": "<number>"}


def tokenize(message: str) -> list[str]:
    """The book's preprocessing: tweet tokens of the lower-cased message, with URLs, mentions,
    hashtags and numbers replaced by placeholders (emoticons stay whole)."""
    return [PLACEHOLDERS.get(m.lastgroup, m.group()) for m in _TOKENS.finditer(message.lower())]


def read_messages(path) -> tuple[list[str], np.ndarray]:
    """(messages, label ids) of a polarity file (see the module doc for the layouts)."""
    messages, labels = [], []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in POLARITY_FIELD:
            raise DatasetError(f"{path} line {number}: {len(fields)} tab-separated fields; "
                               f"expected {LAYOUTS}")
        polarity = fields[POLARITY_FIELD[len(fields)]].strip().lower()
        if polarity not in LABELS:
            raise DatasetError(f"{path} line {number}: polarity {polarity!r}; expected positive, "
                               f"negative or neutral")
        messages.append(fields[-1])
        labels.append(LABELS[polarity])
    if not messages:
        raise DatasetError(f"{path}: no messages (an empty file); expected lines of {LAYOUTS} "
                           f"tab-separated fields")
    return messages, np.array(labels, dtype=np.int64)


def encode(tokenized: list[list[str]], vocab: Vocabulary, length: int) -> np.ndarray:
    """(messages, length) ids padded at the front with PAD; longer messages keep their first
    `length` tokens (the book's truncating='post')."""
    ids = np.full((len(tokenized), length), PAD, dtype=np.int64)
    for row, tokens in zip(ids, tokenized):
        kept = vocab.encode(tokens[:length])
        row[length - len(kept):] = kept
    return ids


# -- a generated task -----------------------------------------------------------------------------
FILLER = ("the a my our this that game show movie match team city class phone music coffee weather "
          "weekend night morning today tomorrow friday saturday we they i you just went saw got "
          "watched heard at on in to with for and after before new old big little first last").split()
CUES = {"positive": ("love", "great", "awesome", "happy", "excited"),
        "negative": ("hate", "awful", "terrible", "sad", "worst")}
EXTRAS = ("@friend", "@team_news", "#weekend", "#fail", "http://t.co/x1y2", "www.example.com/a", "7",
          "3.5", ":)", "!", "...", "?")


def synthetic_messages(n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(polarity, message) pairs: filler words, mentions, links and numbers, plus for a positive
    or negative message one cue word of its polarity, or "not" and a cue of the other one."""
    pairs = []
    for _ in range(n):
        polarity = POLARITIES[rng.integers(3)]
        words = list(rng.choice(FILLER, rng.integers(4, 13)))
        words += list(rng.choice(EXTRAS, rng.integers(0, 3)))
        rng.shuffle(words)
        if polarity != "neutral":
            other = "negative" if polarity == "positive" else "positive"
            cue = ["not", rng.choice(CUES[other])] if rng.random() < 0.3 else [rng.choice(CUES[polarity])]
            at = rng.integers(len(words) + 1)
            words[at:at] = cue
        text = " ".join(str(w).capitalize() if rng.random() < 0.1 else str(w) for w in words)
        pairs.append((polarity, text))
    return pairs


# -- model and task ---------------------------------------------------------------------------------
class SentimentLSTM(nets.Module):
    """Embedding -> bidirectional LSTM -> [final forward h, final backward h] -> dense logits."""

    def __init__(self, vocabulary: int, embed: int = 100, hidden: int = 64, classes: int = 3):
        super().__init__()
        self.embed = nets.Embedding(vocabulary, embed, initializer=lambda s: nets.init.uniform(s, 0.05))
        self.lstm = nets.LSTM(embed, hidden, bidirectional=True)
        self.out = nets.Linear(2 * hidden, classes)

    def forward(self, ids):
        """ids (batch, time) with PAD at the front -> logits (batch, classes)."""
        ids = np.asarray(ids)
        mask = ids != PAD
        _, (forward, backward) = self.lstm(self.embed(np.where(mask, ids, 0)), mask=mask)
        return self.out(F.concat([forward[0], backward[0]], axis=1))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 3) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def macro_f1(confusion: np.ndarray) -> float:
    """The mean over classes of F1 = 2 TP / (2 TP + FP + FN) (0 for a class never true nor predicted)."""
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # = 2 TP + FP + FN
    return float(np.mean(np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)))


def confusion_text(confusion: np.ndarray) -> str:
    """A Markdown table (TensorBoard renders text as Markdown): rows true, columns predicted."""
    lines = ["| true \\ predicted | " + " | ".join(POLARITIES) + " |", "|---" * 4 + "|"]
    lines += [f"| {name} | " + " | ".join(str(c) for c in row) + " |"
              for name, row in zip(POLARITIES, confusion)]
    return "\n".join(lines)


class SentimentTask(common.ClassificationTask):
    monitor = ("accuracy", "max")

    def __init__(self, model, splits, batch_size):
        super().__init__(model, splits, batch_size)
        self.confusion = {}

    def evaluate(self, split):
        if split not in self.splits:
            return {}
        x, y = self.splits[split]
        logits = self.logits(x)
        confusion = self.confusion[split] = confusion_matrix(y, logits.argmax(axis=1))
        return {"loss": common.softmax_loss(logits, y),
                "accuracy": float(np.trace(confusion) / len(y)), "macro_f1": macro_f1(confusion)}

    def end_of_epoch(self, events, epoch, step):
        events.writer.add_text("val/confusion", confusion_text(self.confusion["val"]), step)


def predict(model: SentimentLSTM, vocab: Vocabulary, length: int, message: str) -> str:
    """'polarity (p): message' with the probability of every polarity."""
    with nets.no_grad():
        logits = nets.backend.to_host(model.eval()(encode([tokenize(message)], vocab, length)).data)
    logits = logits[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    shown = ", ".join(f"{name} {p:.3f}" for name, p in zip(POLARITIES, probs))
    return f"{POLARITIES[int(probs.argmax())]} ({shown}): {message}"


# -- the recipe -----------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    group = parser.add_argument_group("data")
    common.flag(group, "--train", default=None, metavar="FILE", path=True,
                help="training messages (required unless --synthetic); see the layouts above")
    common.flag(group, "--dev", default=None, metavar="FILE", path=True,
                help="validation messages (required with --train): early stopping, best epoch")
    common.flag(group, "--test", default=None, metavar="FILE", path=True,
                help="test messages, scored at the end")
    common.flag(group, "--synthetic", default=0, type=int, metavar="N", rule=">= 0",
                help="train on N generated messages (and N/6 each for validation and test) instead "
                     "of files")
    group = parser.add_argument_group("model")
    common.flag(group, "--max-length", default=100, type=int, rule=">= 1", metavar="WORDS",
                help="messages are cut to their first WORDS words (tweets have at most about 50)")
    common.flag(group, "--embed", default=100, type=int, rule=">= 1", help="word embedding size")
    common.flag(group, "--hidden", default=64, type=int, rule=">= 1", help="LSTM units in each direction")
    group = parser.add_argument_group("prediction")
    common.flag(group, "--predict", default=None, metavar="TEXT",
                help="print the polarity of TEXT (after training, or from --from without training)")
    common.flag(group, "--from", default=None, metavar="RUN_OR_CHECKPOINT", path=True, dest="source",
                help="predict with this trained run folder or checkpoint file instead of training")
    common.add_training_flags(parser, epochs=30, batch_size=10, optimizer="rmsprop", lr=0.001)


def load(args) -> tuple[dict[str, tuple[list[str], np.ndarray]], str]:
    """Messages and labels per split ('train', 'val', optionally 'test'), and where they came from."""
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        splits, held_out = {}, max(args.synthetic // 6, 1)
        for split, n in (("train", args.synthetic), ("val", held_out), ("test", held_out)):
            pairs = synthetic_messages(n, rng)
            splits[split] = ([m for _, m in pairs], np.array([LABELS[p] for p, _ in pairs]))
        return splits, "generated messages"
    if args.train is None:
        raise common.RecipeError(f"--train FILE is required: {SOURCE}")
    if args.dev is None:
        raise common.RecipeError("--dev FILE is required with --train: validation messages in one "
                                 "of the same layouts")
    files = {"train": args.train, "val": args.dev, **({"test": args.test} if args.test else {})}
    return {split: read_messages(path) for split, path in files.items()}, args.train


def run_prediction(args) -> int:
    if args.predict is None:
        raise common.RecipeError("--from predicts the polarity of --predict TEXT; give the text")
    path, meta, _ = trained.find(args.source, "sentiment")
    vocab = Vocabulary.from_json(meta["vocab"])
    model = SentimentLSTM(len(vocab), **meta["model"])
    checkpoint.load(path, model)
    print(predict(model, vocab, meta["length"], args.predict))
    return 0


def run(args) -> int:
    common.setup(args)
    if args.source:
        return run_prediction(args)
    texts, source = load(args)
    tokenized = {split: [tokenize(m) for m in messages] for split, (messages, _) in texts.items()}
    vocab = Vocabulary.of_words([t for tokens in tokenized["train"] for t in tokens], unknown="<unknown>")
    longest = max(len(tokens) for tokens in tokenized["train"])
    length = max(1, min(longest, args.max_length))
    cut = sum(len(tokens) > length for tokens in tokenized["train"])
    if cut:
        print(f"sentiment: {cut} training message(s) longer than --max-length {args.max_length} words "
              f"(the longest {longest:,}) are cut to it")
    splits = {split: (encode(tokenized[split], vocab, length), labels)
              for split, (_, labels) in texts.items()}
    architecture = {"embed": args.embed, "hidden": args.hidden}
    model = SentimentLSTM(len(vocab), **architecture)
    task = SentimentTask(model, splits, args.batch_size)
    optimizer = common.make_optimizer(model, args)
    counts = np.bincount(splits["train"][1], minlength=3)
    print(f"sentiment: {source}: {len(splits['train'][1])} training messages ("
          + ", ".join(f"{c} {name}" for name, c in zip(POLARITIES, counts))
          + f"), {len(splits['val'][1])} validation"
          + (f", {len(splits['test'][1])} test" if "test" in splits else "")
          + f"; {len(vocab)} words, padded to {length}; {model.num_parameters():,} parameters")
    run_folder = common.open_run(args, "sentiment")
    meta = {"recipe": "sentiment", "model": architecture, "vocab": vocab.to_json(), "length": length}
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta=meta)
        if result.test:
            events.writer.add_text("test/confusion", confusion_text(task.confusion["test"]), result.steps)
    lines = []
    if result.test:
        lines.append(f"test accuracy {100 * result.test['accuracy']:.2f}%, macro-F1 "
                     f"{100 * result.test['macro_f1']:.2f}%; confusion (rows true, columns predicted):\n"
                     + confusion_text(task.confusion["test"]))
    if args.predict is not None:
        lines.append(predict(model, vocab, length, args.predict))
    common.report(run_folder, result, lines)
    return 0


register(Recipe("sentiment", "bidirectional LSTM message polarity (positive/negative/neutral) on "
                "SemEval-style files or a generated task", add_arguments, run, details=__doc__))
