"""`cbow`: continuous bag-of-words word embeddings (Mikolov et al. 2013; Deep Learning with Theano,
chapter 3): the mean of the embeddings of the --window words on each side predicts the word in
the middle through a softmax over the vocabulary.

After training it prints the nearest neighbours (cosine) of a few probe words and an analogy
score: for each question a:b :: c:d the answer is the word nearest to b - a + c (a, b and c
excluded), scored over the questions whose four words are in the vocabulary. --analogies reads
more questions in the word2vec questions-words.txt format. The embeddings are exported for
TensorBoard's projector (tensorboard --logdir RUN, tab "Projector").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import nets
from nets import F
from workbench import downloads, training
from workbench.datasets import DatasetError, Vocabulary, read_text, split_indices, words
from workbench.recipes import Recipe, common, register
from workbench.recipes.text import strip_gutenberg

# Questions whose words are common in English prose (pronouns, plurals, past tenses), so that a
# single novel can score some of them; the word2vec set needs a far larger corpus.
ANALOGIES = """\
he she him her
he she his her
he they him them
he they his their
i we me us
i we my our
man woman men women
boy girl boys girls
father mother brother sister
man men day days
night nights day days
dollar dollars man men
do did go went
come came go went
say said tell told
see saw know knew
take took give gave
is was are were
has had is was
get got come came
"""


class CBOW(nets.Module):
    def __init__(self, vocabulary: int, dim: int):
        super().__init__()
        self.embed = nets.Embedding(vocabulary, dim, initializer=lambda s: nets.init.uniform(s, 0.5 / dim))
        self.out = nets.Linear(dim, vocabulary)

    def forward(self, context):
        return self.out(F.mean(self.embed(context), axis=1))


def windows(ids: np.ndarray, window: int, skip: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(contexts (n, 2 * window), centres (n,)) for every position with a full window whose centre
    is not `skip` (the unknown-word id: predicting it teaches nothing)."""
    n = len(ids) - 2 * window
    if n < 1:
        raise DatasetError(f"the text has {len(ids)} words, too few for a window of {window} on each side")
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    centres = np.arange(window, window + n)
    contexts = ids[centres[:, None] + offsets]
    keep = ids[centres] != skip
    return contexts[keep], ids[centres][keep]


def parse_analogies(text: str) -> list[tuple[str, str, str, str]]:
    """Questions 'a b c d' one per line; ':' section headers and blank lines are skipped."""
    questions = []
    for line in text.splitlines():
        parts = line.lower().split()
        if len(parts) == 4 and not line.startswith(":"):
            questions.append(tuple(parts))
    return questions


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def nearest(vectors: np.ndarray, vocab: Vocabulary, word: str, k: int = 8) -> list[str]:
    """The k words nearest to `word` by cosine (the word itself left out)."""
    unit = unit_rows(vectors)
    i = vocab.index[word]
    order = np.argsort(-(unit @ unit[i]))
    return [vocab.tokens[j] for j in order if j != i][:k]


def analogy_score(vectors: np.ndarray, vocab: Vocabulary, questions) -> tuple[int, int]:
    """(correct, asked) over the questions whose words are all in the vocabulary."""
    usable = [q for q in questions if all(w in vocab.index and w != vocab.unknown for w in q)]
    if not usable:
        return 0, 0
    unit = unit_rows(vectors)
    ids = np.array([[vocab.index[w] for w in q] for q in usable])
    targets = unit_rows(unit[ids[:, 1]] - unit[ids[:, 0]] + unit[ids[:, 2]])
    scores = targets @ unit.T
    rows = np.arange(len(usable))[:, None]
    scores[rows, ids[:, :3]] = -np.inf  # the question's own words are not answers
    return int((scores.argmax(axis=1) == ids[:, 3]).sum()), len(usable)


class CBOWTask(common.ClassificationTask):
    def __init__(self, model, splits, batch_size, vocab, questions):
        super().__init__(model, splits, batch_size)
        self.vocab, self.questions = vocab, questions

    def vectors(self) -> np.ndarray:
        return nets.backend.to_host(self.model.embed.weight.data)

    def end_of_epoch(self, events, epoch, step):
        correct, asked = analogy_score(self.vectors(), self.vocab, self.questions)
        if asked:
            events.scalars({"val/analogy_accuracy": correct / asked}, step)


def add_arguments(parser) -> None:
    group = parser.add_argument_group("data and model")
    common.flag(group, "--text", default="tiny-shakespeare", metavar="FILE", path=True,
                help=f"a plain UTF-8 text file (a Project Gutenberg book works), or tiny-shakespeare: "
                     f"Karpathy's corpus, downloaded once into {downloads.where('tiny-shakespeare')}")
    common.flag(group, "--dim", default=64, type=int, rule=">= 1", help="embedding size")
    common.flag(group, "--window", default=2, type=int, rule=">= 1", help="context words on each side")
    common.flag(group, "--min-count", default=3, type=int, rule=">= 1",
                help="words seen fewer times become <unk>")
    common.flag(group, "--val-fraction", default=0.1, type=float, rule="in (0, 1)",
                help="examples held out for validation")
    common.flag(group, "--probe", default="king,queen,lord,love,night,death,father,three", metavar="W,W,...",
                help="words whose nearest neighbours are printed")
    common.flag(group, "--analogies", default=None, metavar="FILE", path=True,
                help="more analogy questions (word2vec questions-words.txt format) besides the "
                     "built-in ones")
    common.add_training_flags(parser, epochs=10, batch_size=128, optimizer="adam", lr=0.003,
                              patience=2, schedule="plateau", plateau_patience=0, lr_floor=1e-4)


def load(args):
    tokens = words(strip_gutenberg(read_text(downloads.text_file(args.text))))
    vocab = Vocabulary.of_words(tokens, min_count=args.min_count)
    contexts, centres = windows(vocab.encode(tokens), args.window, vocab.index[vocab.unknown])
    train, val = split_indices(len(centres), (1 - args.val_fraction, args.val_fraction), args.seed)
    if len(train) == 0 or len(val) == 0:
        raise common.RecipeError(f"{args.text} gives {len(centres)} examples: too few to split "
                                 f"with --val-fraction {args.val_fraction}")
    return vocab, {"train": (contexts[train], centres[train]), "val": (contexts[val], centres[val])}


def run(args) -> int:
    common.setup(args)
    vocab, splits = load(args)
    questions = parse_analogies(ANALOGIES)
    if args.analogies:
        try:
            questions += parse_analogies(Path(args.analogies).read_text(encoding="utf-8"))
        except OSError as error:
            raise common.RecipeError(f"--analogies {args.analogies}: {error.strerror}") from None
    model = CBOW(len(vocab), args.dim)
    task = CBOWTask(model, splits, args.batch_size, vocab, questions)
    optimizer = common.make_optimizer(model, args)
    print(f"cbow: {len(vocab)} words in the vocabulary, {len(splits['train'][0])} training and "
          f"{len(splits['val'][0])} validation windows; {model.num_parameters():,} parameters")
    run_folder = common.open_run(args, "cbow")
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta={"recipe": "cbow", "dim": args.dim})
        vectors = task.vectors()
        events.writer.add_embedding(vectors, metadata=vocab.tokens, tag="cbow", global_step=result.steps)
    lines = []
    for word in (w.strip().lower() for w in args.probe.split(",") if w.strip()):
        if word in vocab.index:
            lines.append(f"nearest to {word}: {', '.join(nearest(vectors, vocab, word))}")
        else:
            lines.append(f"nearest to {word}: (not in the vocabulary)")
    correct, asked = analogy_score(vectors, vocab, questions)
    lines.append(f"analogies: {correct} of {asked} correct"
                 + (f" ({100 * correct / asked:.1f}%)" if asked else "")
                 + f", the {asked} of {len(questions)} questions with every word in the vocabulary")
    common.report(run_folder, result, lines)
    return 0


register(Recipe("cbow", "continuous bag-of-words word embeddings: neighbours, analogies, projector export",
                add_arguments, run, details=__doc__))
