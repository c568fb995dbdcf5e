"""`dmn`: question answering over stories with a dynamic memory network (episodic memory;
Deep Learning with Theano, ch. 9; Kumar et al. 2016 with the DMN+ modules of Xiong et al. 2016),
or with the end-to-end memory network (Sukhbaatar et al. 2015) as the baseline (--model memn2n).

Data: bAbI-format files (Weston et al. 2015; e.g. tasks_1-20_v1-2/en/qa1_single-supporting-fact_
train.txt and _test.txt): plain text, one numbered line each; numbering restarts at 1 with each
story; a statement is "N text.", a question "N question?<TAB>answer<TAB>supporting line numbers".
Each question is answered from the story's statements before it (the last --memories of them),
and its answer is one vocabulary word (a list answer such as "apple,milk" counts as one word).
--synthetic N needs no files: N questions of a generated task in the style of bAbI task 1 ("Mary
went to the kitchen. ... Where is Mary?"), and N/5 test questions from other stories.

The vocabulary comes from the training file; --val-fraction of the training questions is held out
for validation (early stopping). Metrics: loss and accuracy (bAbI reports the error, 1 - accuracy).
"""
from __future__ import annotations

import numpy as np

import nets
from nets import F
from workbench import training
from workbench.datasets import DatasetError, Vocabulary, read_text, split_indices, words
from workbench.recipes import Recipe, common, register

MODELS = ("dmn", "memn2n")
DIMS = {"dmn": 80, "memn2n": 20}  # the papers' sizes (DMN+ 80; MemN2N 20 on the 1k bAbI tasks)
SOURCE = ("the bAbI tasks (e.g. tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt, from "
          "Facebook Research's bAbI project), or --synthetic N for a generated task")
QUESTION_LINE = "N question?<TAB>answer<TAB>supporting line numbers"


MAX_STORY = 1000  # lines: bAbI's longest stories are a few hundred


def parse_babi(lines, source) -> list[tuple[list[list[str]], list[str], str]]:
    """(story sentences so far, question, answer) for every question in bAbI-format lines. Line
    numbers count up from 1 within a story; a question's supporting facts are statements of it."""
    examples, story, statements, previous = [], [], set(), 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        index, _, text = line.strip().partition(" ")
        where = f"{source} line {number}"
        if not index.isdigit():
            raise DatasetError(f"{where}: no line number first; expected 'N text.' or '{QUESTION_LINE}'")
        index = int(index)
        if index == 1:
            story, statements = [], set()
        elif index != previous + 1:
            raise DatasetError(f"{where}: numbered {index} after {previous}; a story's lines count up "
                               f"from 1, and the next story starts again at 1")
        elif index > MAX_STORY:
            raise DatasetError(f"{where}: a story of more than {MAX_STORY} lines; does the numbering "
                               f"ever restart at 1 for the next story?")
        previous = index
        if "\t" not in text:
            if text.rstrip().endswith("?"):
                raise DatasetError(f"{where}: a question without its tab-separated answer; expected "
                                   f"'{QUESTION_LINE}'")
            story.append(words(text))
            statements.add(index)
            continue
        fields = text.split("\t")
        if len(fields) != 3:
            raise DatasetError(f"{where}: a question with {len(fields)} tab-separated fields; "
                               f"expected '{QUESTION_LINE}'")
        if not fields[1].strip():
            raise DatasetError(f"{where}: a question without an answer; expected '{QUESTION_LINE}'")
        support = fields[2].split()
        if not all(n.isdigit() and int(n) in statements for n in support):
            raise DatasetError(f"{where}: supporting facts {fields[2].strip() or '(none)'} are not all "
                               f"statement lines of this story (it has "
                               f"{', '.join(map(str, sorted(statements))) or 'none'} so far)")
        examples.append((list(story), words(fields[0]), fields[1].strip().lower()))
    if not examples:
        raise DatasetError(f"{source}: no questions (an empty file?); expected bAbI lines: 'N text.' "
                           f"statements and '{QUESTION_LINE}'")
    return examples


def read_babi(path):
    return parse_babi(read_text(path).splitlines(), path)


# -- the generated task ---------------------------------------------------------------------------
PEOPLE = ("mary", "john", "sandra", "daniel")
PLACES = ("bathroom", "hallway", "garden", "office", "kitchen", "bedroom")
MOVES = ("moved to", "went to", "journeyed to", "travelled to", "went back to")


def synthetic_babi(questions: int, rng: np.random.Generator) -> list[str]:
    """bAbI lines in the style of task 1 (single supporting fact): stories of five rounds of two
    moves and a question about someone who has moved."""
    lines, asked = [], 0
    while asked < questions:
        line, places = 1, {}
        for _ in range(min(5, questions - asked)):
            for _ in range(2):
                person, place = rng.choice(PEOPLE), rng.choice(PLACES)
                places[person] = (place, line)
                lines.append(f"{line} {person.capitalize()} {rng.choice(MOVES)} the {place}.")
                line += 1
            person = rng.choice(sorted(places))
            place, support = places[person]
            lines.append(f"{line} Where is {person.capitalize()}? \t{place}\t{support}")
            line, asked = line + 1, asked + 1
    return lines


# -- encoding -------------------------------------------------------------------------------------
def vocabulary(examples) -> Vocabulary:
    """<pad> (id 0, as the models expect), <unk>, then every word and answer, sorted."""
    tokens = {t for story, question, answer in examples
              for t in [*question, answer, *(w for sentence in story for w in sentence)]}
    return Vocabulary(["<pad>", "<unk>"] + sorted(tokens), unknown="<unk>")


def encode(examples, vocab: Vocabulary, memories: int, length: int):
    """(stories (n, memories, length), questions (n, length), answers (n,)) ids: the most recent
    sentence in the last slot, words padded on the right."""
    n = len(examples)
    stories = np.zeros((n, memories, length), dtype=np.int64)
    questions = np.zeros((n, length), dtype=np.int64)
    answers = np.zeros(n, dtype=np.int64)
    for i, (story, question, answer) in enumerate(examples):
        recent = story[-memories:]
        for slot, sentence in enumerate(recent, start=memories - len(recent)):
            ids = vocab.encode(sentence[:length])
            stories[i, slot, :len(ids)] = ids
        ids = vocab.encode(question[:length])
        questions[i, :len(ids)] = ids
        answers[i] = vocab.encode([answer])[0]
    return stories, questions, answers


class QuestionTask(common.ClassificationTask):
    """(story, question) -> answer word, softmax cross-entropy."""

    # Answers right, not the loss, pick the best epoch and stop the run: once every validation
    # answer is right the loss still creeps down for dozens of epochs and would never stop it.
    monitor = ("accuracy", "max")

    def loss(self, batch):
        stories, questions, answers = batch
        return F.softmax_cross_entropy(self.model(stories, questions), answers)

    def evaluate(self, split):
        if split not in self.splits:
            return {}
        stories, questions, answers = self.splits[split]
        logits = np.concatenate([
            nets.backend.to_host(self.model(stories[i:i + self.eval_batch], questions[i:i + self.eval_batch]).data)
            for i in range(0, len(answers), self.eval_batch)])
        return {"loss": common.softmax_loss(logits, answers),
                "accuracy": float((logits.argmax(axis=1) == answers).mean())}


# -- the recipe -----------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    group = parser.add_argument_group("data")
    common.flag(group, "--train", default=None, metavar="FILE", path=True,
                help="bAbI-format training stories (required unless --synthetic)")
    common.flag(group, "--test", default=None, metavar="FILE", path=True, help="bAbI-format test stories")
    common.flag(group, "--synthetic", default=0, type=int, metavar="N", rule=">= 0",
                help="train on N generated questions (and test on N/5) instead of files")
    common.flag(group, "--val-fraction", default=0.1, type=float, rule="in (0, 1)",
                help="training questions held out for validation")
    common.flag(group, "--memories", default=50, type=int, rule=">= 1",
                help="the most recent statements a question is answered from")
    group = parser.add_argument_group("model")
    common.flag(group, "--model", default="dmn", choices=MODELS,
                help="dmn: dynamic memory network; memn2n: end-to-end memory network (the baseline)")
    common.flag(group, "--dim", default=None, type=int, rule=">= 1",
                help="embedding and memory size (default: 80 for dmn, 20 for memn2n)")
    common.flag(group, "--hops", default=3, type=int, rule=">= 1",
                help="episodes (dmn) or memory hops (memn2n)")
    common.add_training_flags(parser, epochs=40, batch_size=32, optimizer="adam", lr=0.003, clip=40.0,
                              patience=10)


def load(args) -> tuple[dict, str]:
    """Examples for 'train' and optionally 'test', and where they came from."""
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        train = parse_babi(synthetic_babi(args.synthetic, rng), "generated stories")
        test = parse_babi(synthetic_babi(max(args.synthetic // 5, 1), rng), "generated stories")
        return {"train": train, "test": test}, "generated stories in the style of bAbI task 1"
    if args.train is None:
        raise common.RecipeError(f"--train FILE is required: {SOURCE}")
    files = {"train": args.train, **({"test": args.test} if args.test else {})}
    return {split: read_babi(path) for split, path in files.items()}, args.train


def run(args) -> int:
    common.setup(args)
    args.dim = args.dim or DIMS[args.model]
    examples, source = load(args)
    train_idx, val_idx = split_indices(len(examples["train"]), (1 - args.val_fraction, args.val_fraction),
                                       args.seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise common.RecipeError(f"{len(examples['train'])} training questions are too few to hold out "
                                 f"--val-fraction {args.val_fraction}")
    examples["val"] = [examples["train"][i] for i in val_idx]
    examples["train"] = [examples["train"][i] for i in train_idx]
    vocab = vocabulary(examples["train"])
    memories = max(1, min(args.memories, max(len(story) for story, _, _ in examples["train"])))
    length = max(len(sentence) for story, question, _ in examples["train"] for sentence in [*story, question])
    splits = {split: encode(part, vocab, memories, length) for split, part in examples.items()}
    if args.model == "dmn":
        model = nets.DynamicMemoryNetwork(len(vocab), args.dim, args.hops)
    else:
        model = nets.MemoryNetwork(len(vocab), args.dim, args.hops, memories, length)
    task = QuestionTask(model, splits, args.batch_size, eval_batch=500)
    optimizer = common.make_optimizer(model, args)
    print(f"dmn ({args.model}): {source}: {len(train_idx)} training, {len(val_idx)} validation"
          + (f", {len(examples['test'])} test" if "test" in examples else "")
          + f" questions; {len(vocab)} words; stories of up to {memories} statements of up to "
            f"{length} words; {model.num_parameters():,} parameters")
    run_folder = common.open_run(args, "dmn")
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta={"recipe": "dmn", "model": args.model})
    lines = []
    if result.test:
        accuracy = result.test["accuracy"]
        lines.append(f"test accuracy: {100 * accuracy:.2f}% (error {100 * (1 - accuracy):.2f}%)")
    common.report(run_folder, result, lines)
    return 0


register(Recipe("dmn", "dynamic memory network (episodic memory) on bAbI-format question answering, "
                "with the end-to-end memory network as baseline", add_arguments, run, details=__doc__))
