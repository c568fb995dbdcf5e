"""`seq2seq`: translation with an encoder-decoder and attention (Deep Learning with Theano,
ch. 8), or a chatbot (--chatbot), or a built-in task of dates written in words -> ISO dates.

Model (nets.Seq2Seq): bidirectional LSTM encoder, stacked LSTM decoder with input feeding and
additive (Bahdanau) or dot (Luong) attention, trained with teacher forcing. The book's model has 2
layers of 500 units; the defaults here are 2 layers of 128 (--hidden 500 for the book's size),
which learn the dates task in minutes on a CPU.

Data: parallel text files, one sentence a line, line i of --src translated by line i of --tgt, and
the same for validation (--val-src, --val-tgt). Sentences are lower-cased and split into words
and punctuation. Each side's vocabulary keeps its --vocab most frequent training words plus the
special tokens <pad>, <unk>, <s> (start) and </s> (end); pairs with a side longer than --max-len
tokens are dropped, and what was dropped is printed. --chatbot reads dialogue pairs the same way
(a line of --src, the reply on the same line of --tgt) with one vocabulary and one embedding table
for both sides and the input reversed, as the book does. --synthetic N needs no files: N dates in
one of six spoken or written forms ("twenty third of march nineteen ninety one", "2 3 / 0 3 / 1 9
9 1", ...) to translate into "1 9 9 1 - 0 3 - 2 3", and N/10 held-out dates for validation.

Validation decodes greedily after every epoch: exact match (the whole sentence right) and corpus
BLEU-4 (Papineni et al. 2002); TensorBoard shows attention maps (Images tab: rows are output
tokens, columns input tokens) and sample translations (Text tab). At the end the validation set
is decoded again with beam search (--beam). `--translate TEXT` translates after training, or,
with --from, from a trained run without training.
"""
from __future__ import annotations

import collections
import datetime
import math
import re

import numpy as np

import nets
from nets import F, checkpoint
from workbench import training
from workbench.datasets import DatasetError, Vocabulary, read_text
from workbench.recipes import Recipe, common, register, trained, vision

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
PAD, UNK, START, END = range(4)
NEVER_SAID = (PAD, START)  # tokens a decoder never outputs (it may say <unk>: targets hold it)
ARCHITECTURE = ("embed", "hidden", "layers", "attention")
_WORDS = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(sentence: str) -> list[str]:
    """Lower-case words (with inner apostrophes) and punctuation marks."""
    return _WORDS.findall(sentence.lower())


def read_lines(path) -> list[list[str]]:
    """The tokenized lines of a one-sentence-a-line file (blank lines kept: they pair up)."""
    lines = read_text(path).splitlines()
    if not any(line.strip() for line in lines):
        raise DatasetError(f"{path}: no sentences (an empty file); expected one sentence a line")
    return [tokenize(line) for line in lines]


def read_parallel(src_path, tgt_path) -> list[tuple[list[str], list[str]]]:
    """Sentence pairs of two files that correspond line by line."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DatasetError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; line i "
                           f"of one must be the translation of line i of the other")
    return list(zip(src, tgt))


def vocabulary(sentences, size: int) -> Vocabulary:
    """The special tokens, then the `size` most frequent words (ties alphabetical)."""
    counts = collections.Counter(token for sentence in sentences for token in sentence)
    kept = sorted(counts, key=lambda w: (-counts[w], w))[:size]
    return Vocabulary(list(SPECIALS) + kept, unknown="<unk>")  # tokenize() never makes "<s>"


def filter_lengths(pairs, max_len: int, what: str) -> list:
    """The pairs with both sides within max_len tokens (and not empty); prints what it dropped."""
    kept = [(s, t) for s, t in pairs if 0 < len(s) <= max_len and 0 < len(t) <= max_len]
    empty = sum(1 for s, t in pairs if not s or not t)
    print(f"{what}: kept {len(kept)} of {len(pairs)} pairs; dropped {len(pairs) - len(kept) - empty} "
          f"with a side longer than {max_len} tokens and {empty} with an empty side")
    return kept


# -- BLEU -----------------------------------------------------------------------------------------
def ngrams(tokens, n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses, references, max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002), one reference per sentence: the geometric mean of the
    modified n-gram precisions (n = 1..max_n; each hypothesis n-gram counts at most as often as
    in its reference), pooled over the corpus, times the brevity penalty exp(1 - r/c) when the
    hypotheses' length c is below the references' r. 0 when a precision is 0."""
    matches, totals = np.zeros(max_n), np.zeros(max_n)
    hyp_length = ref_length = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp_length, ref_length = hyp_length + len(hypothesis), ref_length + len(reference)
        for n in range(1, max_n + 1):
            counts, allowed = ngrams(hypothesis, n), ngrams(reference, n)
            matches[n - 1] += sum(min(c, allowed[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hypothesis) - n + 1, 0)
    if hyp_length == 0 or not np.all(matches > 0):
        return 0.0
    log_precision = np.mean(np.log(matches / totals))
    brevity = min(0.0, 1 - ref_length / hyp_length)
    return float(math.exp(log_precision + brevity))


# -- the built-in dates task ------------------------------------------------------------------------
ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINAL_ONES = ("_ first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
                "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth").split()
ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}
MONTHS = ("january february march april may june july august september october november "
          "december").split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()


def number_words(n: int) -> str:
    """0 <= n < 100 in words."""
    if n < 20:
        return ONES[n]
    return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])


def ordinal_words(n: int) -> str:
    """1 <= n <= 31 as an ordinal in words."""
    if n < 20:
        return ORDINAL_ONES[n]
    if n % 10 == 0:
        return ORDINAL_TENS[n]
    return f"{TENS[n // 10]} {ORDINAL_ONES[n % 10]}"


def year_words(year: int) -> str:
    """1900-2099 as spoken: nineteen oh five, two thousand and five, twenty twelve."""
    century, rest = divmod(year, 100)
    if century == 20 and rest < 10:
        return "two thousand" + ("" if rest == 0 else f" and {ONES[rest]}")
    head = number_words(century)
    if rest == 0:
        return f"{head} hundred"
    return f"{head} oh {ONES[rest]}" if rest < 10 else f"{head} {number_words(rest)}"


def digits(n: int, width: int = 1) -> str:
    return " ".join(f"{n:0{width}d}")


DATE_FORMATS = (
    lambda d: f"{ordinal_words(d.day)} of {MONTHS[d.month - 1]} {year_words(d.year)}",
    lambda d: f"{MONTHS[d.month - 1]} {ordinal_words(d.day)} , {year_words(d.year)}",
    lambda d: f"{WEEKDAYS[d.weekday()]} {ordinal_words(d.day)} {MONTHS[d.month - 1]} {year_words(d.year)}",
    lambda d: f"{digits(d.day)} {MONTHS[d.month - 1]} {digits(d.year)}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {digits(d.day)} , {digits(d.year)}",
    lambda d: f"{digits(d.day, 2)} / {digits(d.month, 2)} / {digits(d.year)}",
)
FIRST_DAY = datetime.date(1900, 1, 1)
DAYS = (datetime.date(2100, 1, 1) - FIRST_DAY).days  # to 2099-12-31


def synthetic_dates(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """n distinct (date in one of DATE_FORMATS, ISO date) token pairs."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(DAYS * len(DATE_FORMATS), size=n, replace=False)
    pairs = []
    for pick in picks:
        day, form = divmod(int(pick), len(DATE_FORMATS))
        date = FIRST_DAY + datetime.timedelta(days=day)
        iso = f"{digits(date.year)} - {digits(date.month, 2)} - {digits(date.day, 2)}"
        pairs.append((DATE_FORMATS[form](date).split(), iso.split()))
    return pairs


# -- the task ---------------------------------------------------------------------------------------
def pad_batch(pairs) -> tuple[np.ndarray, ...]:
    """(src, src_mask, tgt_in, tgt_out, tgt_weights) of id pairs, padded on the right:
    tgt_in is <s> + target, tgt_out target + </s>."""
    n = len(pairs)
    src_len, tgt_len = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs) + 1
    src, tgt_in, tgt_out = (np.full((n, length), PAD, dtype=np.int64)
                            for length in (src_len, tgt_len, tgt_len))
    src_mask, weights = np.zeros((n, src_len), np.float32), np.zeros((n, tgt_len), np.float32)
    for i, (s, t) in enumerate(pairs):
        src[i, :len(s)], src_mask[i, :len(s)] = s, 1
        tgt_in[i, 0], tgt_in[i, 1:len(t) + 1] = START, t
        tgt_out[i, :len(t)], tgt_out[i, len(t)] = t, END
        weights[i, :len(t) + 1] = 1
    return src, src_mask, tgt_in, tgt_out, weights


def until_end(ids) -> list[int]:
    ids = list(ids)
    return ids[:ids.index(END)] if END in ids else ids


def decode(model: nets.Seq2Seq, src, src_mask, steps: int, beam: int) -> np.ndarray:
    if beam > 1:
        return model.beam_decode(src, START, END, steps, beam, src_mask, banned=NEVER_SAID)
    return model.greedy_decode(src, START, steps, src_mask, banned=NEVER_SAID)


class TranslationTask:
    """Teacher-forced cross-entropy per target token; validation by decoding."""

    monitor = ("loss", "min")

    def __init__(self, model: nets.Seq2Seq, splits: dict, batch_size: int, vocabs: tuple, run,
                 eval_batch: int = 250):
        self.model, self.splits, self.batch_size = model, splits, batch_size
        self.src_vocab, self.tgt_vocab = vocabs
        self.run, self.eval_batch = run, eval_batch

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits["train"]) / self.batch_size)

    def batches(self, rng):
        pairs = self.splits["train"]
        order = rng.permutation(len(pairs))
        for start in range(0, len(pairs), self.batch_size):
            yield pad_batch([pairs[i] for i in order[start:start + self.batch_size]])

    def loss(self, batch):
        src, mask, tgt_in, tgt_out, weights = batch
        return F.softmax_cross_entropy(self.model(src, tgt_in, mask), tgt_out, weights)

    def translate(self, pairs, beam: int = 1) -> list[list[int]]:
        """Decoded target ids (without </s>) of id pairs, in evaluation batches."""
        out = []
        for start in range(0, len(pairs), self.eval_batch):
            src, mask, _, tgt_out, _ = pad_batch(pairs[start:start + self.eval_batch])
            out += [until_end(row) for row in decode(self.model, src, mask, tgt_out.shape[1] + 5, beam)]
        return out

    def evaluate(self, split: str, beam: int = 1) -> dict[str, float]:
        pairs = self.splits.get(split)
        if not pairs:
            return {}
        nll = tokens = 0.0
        for start in range(0, len(pairs), self.eval_batch):
            src, mask, tgt_in, tgt_out, weights = pad_batch(pairs[start:start + self.eval_batch])
            count = float(weights.sum())
            nll += F.softmax_cross_entropy(self.model(src, tgt_in, mask), tgt_out, weights).item() * count
            tokens += count
        hypotheses, references = self.translate(pairs, beam), [list(t) for _, t in pairs]
        exact = float(np.mean([h == r for h, r in zip(hypotheses, references)]))
        return {"loss": nll / tokens, "exact_match": exact, "bleu": corpus_bleu(hypotheses, references)}

    def end_of_epoch(self, events, epoch: int, step: int) -> None:
        pairs = self.splits["val"][:6]
        src, mask, _, tgt_out, _ = pad_batch(pairs)
        predicted, weights = self.model.greedy_decode(src, START, tgt_out.shape[1], mask, attention=True,
                                                      banned=NEVER_SAID)
        maps, lines = [], []
        for (s, t), row, attention in zip(pairs, predicted, weights):
            words = until_end(row)
            # rows: the output tokens and </s>; columns: the input tokens; pixels 8x8
            maps.append(np.kron(attention[:len(words) + 1, :len(s)], np.ones((8, 8))))
            lines.append(f"{' '.join(self.src_vocab.decode(s))} -> {' '.join(self.tgt_vocab.decode(words))}"
                         f" (reference: {' '.join(self.tgt_vocab.decode(t))})")
        height, width = max(m.shape[0] for m in maps), max(m.shape[1] for m in maps)
        padded = np.zeros((len(maps), height, width))
        for image, attention in zip(padded, maps):
            image[:attention.shape[0], :attention.shape[1]] = attention
        vision.log_images(events, self.run, "val/attention", padded, step, columns=3)
        events.writer.add_text("val/translations", "\n\n".join(f"`{line}`" for line in lines), step)


# -- the recipe -------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    group = parser.add_argument_group("data")
    for name, what in (("--src", "source sentences for training"), ("--tgt", "their translations"),
                       ("--val-src", "source sentences for validation"),
                       ("--val-tgt", "their translations")):
        common.flag(group, name, default=None, metavar="FILE", path=True,
                    help=f"{what}, one a line (required unless --synthetic)")
    common.flag(group, "--synthetic", default=0, type=int, metavar="N", rule=">= 0",
                help="train on N generated dates (and N/10 held-out ones) instead of files")
    common.flag(group, "--chatbot", default=False, action="store_true",
                help="dialogue pairs: one vocabulary and embedding for both sides, input reversed")
    common.flag(group, "--vocab", default=10000, type=int, rule=">= 1",
                help="words kept per side (the most frequent in training), besides the special tokens")
    common.flag(group, "--max-len", default=30, type=int, rule=">= 1",
                help="pairs with a side longer than this many tokens are dropped")
    group = parser.add_argument_group("model")
    common.flag(group, "--embed", default=64, type=int, rule=">= 1", help="word embedding size")
    common.flag(group, "--hidden", default=128, type=int, rule=">= 1",
                help="LSTM units (each direction in the encoder)")
    common.flag(group, "--layers", default=2, type=int, rule=">= 1",
                help="LSTM layers in the encoder and the decoder")
    common.flag(group, "--attention", default="additive", choices=("additive", "dot"),
                help="additive (Bahdanau) or scaled dot-product with a learned map (Luong)")
    group = parser.add_argument_group("decoding")
    common.flag(group, "--beam", default=5, type=int, rule=">= 1",
                help="beam width of the final validation decoding and --translate (1: greedy)")
    common.flag(group, "--translate", default=None, metavar="TEXT",
                help="translate TEXT (after training, or from --from without training)")
    common.flag(group, "--from", default=None, metavar="RUN_OR_CHECKPOINT", path=True, dest="source",
                help="translate with this trained run folder or checkpoint file instead of training")
    common.add_training_flags(parser, epochs=20, batch_size=64, optimizer="adam", lr=0.002, clip=5.0,
                              patience=4, schedule="plateau", plateau_patience=1, lr_floor=1e-4)


def load(args) -> tuple[dict, str]:
    """Token pairs for 'train' and 'val', and a word on where they came from."""
    if args.synthetic:
        pairs = synthetic_dates(args.synthetic + max(args.synthetic // 10, 1), args.seed)
        return {"train": pairs[:args.synthetic], "val": pairs[args.synthetic:]}, "generated dates"
    files = {"--src": args.src, "--tgt": args.tgt, "--val-src": args.val_src, "--val-tgt": args.val_tgt}
    missing = [flag for flag, path in files.items() if path is None]
    if missing:
        raise common.RecipeError(f"{' '.join(f'{m} FILE' for m in missing)} required: parallel text "
                                 f"files, one sentence a line (e.g. a Europarl or Tatoeba language "
                                 f"pair, or dialogue pairs with --chatbot), or --synthetic N for the "
                                 f"built-in dates task")
    return {"train": read_parallel(args.src, args.tgt),
            "val": read_parallel(args.val_src, args.val_tgt)}, args.src


def source_ids(tokens: list[str], vocab: Vocabulary, reverse: bool) -> np.ndarray:
    return vocab.encode(tokens[::-1] if reverse else tokens)


def build_model(meta: dict) -> nets.Seq2Seq:
    model = meta["model"]
    return nets.Seq2Seq(len(meta["src_vocab"]["tokens"]), len(meta["tgt_vocab"]["tokens"]),
                        shared_embedding=meta["chatbot"], **{k: model[k] for k in ARCHITECTURE})


def translate_text(model, meta: dict, text: str, beam: int) -> str:
    src_vocab, tgt_vocab = Vocabulary.from_json(meta["src_vocab"]), Vocabulary.from_json(meta["tgt_vocab"])
    ids = source_ids(tokenize(text)[:meta["max_len"]], src_vocab, meta["chatbot"])
    if len(ids) == 0:
        raise common.RecipeError(f"--translate {text!r} has no words")
    model.eval()
    out = decode(model, ids[None], np.ones((1, len(ids)), np.float32), 2 * meta["max_len"], beam)
    return f"{text} -> {' '.join(tgt_vocab.decode(until_end(out[0])))}"


def run(args) -> int:
    common.setup(args)
    if args.source:
        if args.translate is None:
            raise common.RecipeError("--from translates --translate TEXT; give the text")
        path, meta, _ = trained.find(args.source, "seq2seq")
        model = build_model(meta)
        checkpoint.load(path, model)
        print(translate_text(model, meta, args.translate, args.beam))
        return 0
    texts, source = load(args)
    texts = {split: filter_lengths(pairs, args.max_len, f"{split} length filter")
             for split, pairs in texts.items()}
    if not texts["train"] or not texts["val"]:
        raise common.RecipeError(f"no {'training' if not texts['train'] else 'validation'} pairs "
                                 f"left after the length filter; raise --max-len")
    if args.chatbot:
        shared = vocabulary([side for pair in texts["train"] for side in pair], args.vocab)
        src_vocab = tgt_vocab = shared
    else:
        src_vocab = vocabulary([s for s, _ in texts["train"]], args.vocab)
        tgt_vocab = vocabulary([t for _, t in texts["train"]], args.vocab)
    splits = {split: [(source_ids(s, src_vocab, args.chatbot), tgt_vocab.encode(t)) for s, t in pairs]
              for split, pairs in texts.items()}
    unknown = np.mean(np.concatenate([t for _, t in splits["val"]]) == UNK)
    architecture = {k: getattr(args, k) for k in ARCHITECTURE}
    meta = {"recipe": "seq2seq", "model": architecture, "src_vocab": src_vocab.to_json(),
            "tgt_vocab": tgt_vocab.to_json(), "chatbot": args.chatbot, "max_len": args.max_len}
    model = build_model(meta)
    print(f"seq2seq{' (chatbot)' if args.chatbot else ''}: {source}: {len(splits['train'])} training and "
          f"{len(splits['val'])} validation pairs; vocabularies {len(src_vocab)} and {len(tgt_vocab)} "
          f"tokens ({100 * unknown:.1f}% of validation target words unknown); "
          f"{model.num_parameters():,} parameters")
    run_folder = common.open_run(args, "seq2seq")
    task = TranslationTask(model, splits, args.batch_size, (src_vocab, tgt_vocab), run_folder)
    optimizer = common.make_optimizer(model, args)
    lines = []
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta=meta)
        if args.beam > 1:
            with nets.no_grad():
                beam = task.evaluate("val", args.beam)
            events.scalars({f"val_beam/{k}": v for k, v in beam.items() if k != "loss"}, result.steps)
            lines.append(f"val with beam {args.beam}: exact_match {beam['exact_match']:.4f}  "
                         f"bleu {beam['bleu']:.4f}")  # as the epochs' val lines: fractions
    if args.translate is not None:
        with nets.no_grad():
            lines.append(translate_text(model, meta, args.translate, args.beam))
    common.report(run_folder, result, lines)
    return 0


register(Recipe("seq2seq", "encoder-decoder LSTMs with attention: translation, --chatbot, or a "
                "built-in dates task; BLEU, beam search, attention maps", add_arguments, run,
                details=__doc__))
