"""The book's remaining experiments as recipes (sentiment, seq2seq, dmn, mnist-sequence), end to
end on small data the tests make: they learn, resume exactly, and stop with one line naming a
missing or malformed file."""
import shutil
from datetime import date

import numpy as np
import pytest

from nets import checkpoint
from test_recipes import FAST, assert_learns, history, run_recipe, write_mnist
from workbench import cli
from workbench.datasets import DatasetError, Vocabulary
from workbench.recipes import dmn, mnist_sequence, sentiment, seq2seq
from workbench.runs import RunDir


def assert_same_checkpoints(a, b):
    header_a, arrays_a = checkpoint.read(RunDir(a).checkpoint_path())
    header_b, arrays_b = checkpoint.read(RunDir(b).checkpoint_path())
    assert (header_a["meta"]["epoch"], header_a["meta"]["step"]) == (header_b["meta"]["epoch"],
                                                                    header_b["meta"]["step"])
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    untimed = [[{k: v for k, v in epoch.items() if k != "seconds"} for epoch in header["meta"]["history"]]
               for header in (header_a, header_b)]
    assert untimed[0] == untimed[1]  # every loss and metric of every epoch


def tags(run_dir, kind):
    """The TensorBoard tags of one kind ('images', 'tensors' for text) in a run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={kind: 0})
    events.Reload()
    return set(events.Tags()[kind])


def assert_resumes_exactly(tmp_path, recipe, *flags):
    straight = run_recipe(tmp_path, recipe, *flags, "--epochs", "2", run_name="straight")
    split = run_recipe(tmp_path, recipe, *flags, "--epochs", "1", run_name="split")
    assert cli.main(["recipe", recipe, "--resume", str(split), "--epochs", "2", *FAST]) == 0
    assert_same_checkpoints(straight, split)


def one_line_error(capsys, recipe, *flags, logdir):
    """Run a recipe that must fail: exit status 2, one line on stderr, no run folder left."""
    assert cli.main(["recipe", recipe, "--logdir", str(logdir), *FAST, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"workbench recipe {recipe}: error: ") and err.count("\n") == 1, err
    assert not logdir.exists()
    return err


# -- sentiment ------------------------------------------------------------------------------------
def write_messages(path, pairs, layout):
    """Polarity files in the three layouts the recipe reads."""
    rows = {2: lambda i, p, m: [p, m], 4: lambda i, p, m: [str(i), str(i), p, m],
            6: lambda i, p, m: [str(i), str(i), "0", "1", p, m]}[layout]
    path.write_text("".join("\t".join(rows(i, p, m)) + "\n" for i, (p, m) in enumerate(pairs)))
    return path


@pytest.fixture(scope="module")
def polarity_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sentiment")
    rng = np.random.default_rng(0)
    return {"--train": write_messages(folder / "train.tsv", sentiment.synthetic_messages(200, rng), 6),
            "--dev": write_messages(folder / "dev.tsv", sentiment.synthetic_messages(60, rng), 2),
            "--test": write_messages(folder / "test.tsv", sentiment.synthetic_messages(60, rng), 4)}


SENTIMENT = ["--embed", "8", "--hidden", "8", "--batch-size", "10", "--lr", "0.01"]


def sentiment_flags(files):
    return [str(part) for flag, path in files.items() for part in (flag, path)] + SENTIMENT


def test_sentiment_tokenizer_keeps_the_books_placeholders():
    assert sentiment.tokenize("LOVE it @Bob_1!! #GoTeam 3.5 stars http://t.co/x?a=1 :) don't...") == [
        "love", "it", "<user>", "!", "!", "<hashtag>", "<number>", "stars", "<url>", ":)", "don't", "..."]


def test_sentiment_macro_f1_matches_a_hand_computed_case():
    confusion = sentiment.confusion_matrix(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]))
    np.testing.assert_array_equal(confusion, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    # F1: positive 2*2/(2*2+0+1) = 0.8, negative 2/(2+1+1) = 0.5, neutral 2/(2+1+0) = 2/3
    assert sentiment.macro_f1(confusion) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_sentiment_learns_from_every_layout_and_predicts_from_the_run(tmp_path, polarity_files, capsys):
    run_dir = run_recipe(tmp_path, "sentiment", *sentiment_flags(polarity_files), "--epochs", "3")
    assert_learns(run_dir, accuracy=0.6)  # 0.68; three classes
    assert history(run_dir)[-1]["val_accuracy"] > 0.6
    summary = (run_dir / "summary.txt").read_text()
    assert "test accuracy" in summary and "macro-F1" in summary and "| negative |" in summary
    assert tags(run_dir, "tensors") >= {"val/confusion/text_summary", "test/confusion/text_summary"}
    capsys.readouterr()
    assert cli.main(["recipe", "sentiment", "--from", str(run_dir), "--predict", "I hate it"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(": I hate it\n") and out.split()[0] in sentiment.POLARITIES


def test_sentiment_resumes_exactly(tmp_path, polarity_files):
    files = {k: v for k, v in polarity_files.items() if k != "--test"}
    assert_resumes_exactly(tmp_path, "sentiment", *sentiment_flags(files))


def test_sentiment_names_a_missing_or_malformed_file(tmp_path, polarity_files, capsys):
    logdir = tmp_path / "runs"
    err = one_line_error(capsys, "sentiment", logdir=logdir)
    assert "--train FILE is required" in err and "SemEval-2013" in err and "--synthetic" in err
    files = dict(polarity_files)
    files["--dev"] = tmp_path / "missing.tsv"
    assert "not found" in one_line_error(capsys, "sentiment", *sentiment_flags(files), logdir=logdir)
    files["--dev"] = tmp_path / "empty.tsv"
    files["--dev"].write_text("\n")
    assert "empty.tsv: no messages" in one_line_error(capsys, "sentiment", *sentiment_flags(files),
                                                      logdir=logdir)
    files["--dev"].write_text("positive\tfine\nnegative\tone\ttoo many\n")
    err = one_line_error(capsys, "sentiment", *sentiment_flags(files), logdir=logdir)
    assert "empty.tsv line 2: 3 tab-separated fields; expected 6" in err
    files["--dev"].write_text("happy\tfine\n")
    assert "line 1: polarity 'happy'" in one_line_error(capsys, "sentiment", *sentiment_flags(files),
                                                         logdir=logdir)
    assert "give the text" in one_line_error(capsys, "sentiment", "--from", str(tmp_path), logdir=logdir)


# -- seq2seq --------------------------------------------------------------------------------------
SEQ2SEQ = ["--embed", "8", "--hidden", "16", "--layers", "1", "--batch-size", "16", "--lr", "0.01",
           "--beam", "2"]


def test_bleu_matches_hand_computed_cases():
    hypothesis, reference = "the cat sat on the mat".split(), "the cat sat on a mat".split()
    # clipped n-gram matches 5/6, 3/5, 2/4, 1/3; equal lengths: no brevity penalty
    bleu = seq2seq.corpus_bleu([hypothesis], [reference])
    assert bleu == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25) == pytest.approx(0.5373, abs=1e-4)
    # every n-gram matches, but 4 words for 6: brevity penalty exp(1 - 6/4)
    assert seq2seq.corpus_bleu([reference[:4]], [reference]) == pytest.approx(np.exp(-0.5))
    assert seq2seq.corpus_bleu([["a", "b"]], [["a", "b"]]) == 0.0  # no 3-grams to match
    assert seq2seq.corpus_bleu([reference, reference[:4]], [reference, reference]) == pytest.approx(
        np.exp(1 - 12 / 10) * (10 / 10 * 8 / 8 * 6 / 6 * 4 / 4) ** 0.25)  # pooled over the corpus


def test_dates_are_spelled_out_and_held_out_ones_are_new():
    assert seq2seq.DATE_FORMATS[0](date(1991, 3, 23)) == "twenty third of march nineteen ninety one"
    assert seq2seq.DATE_FORMATS[2](date(2007, 11, 30)) == "friday thirtieth november two thousand and seven"
    assert seq2seq.DATE_FORMATS[5](date(1905, 1, 2)) == "0 2 / 0 1 / 1 9 0 5"
    pairs = seq2seq.synthetic_dates(500, seed=3)
    assert len({" ".join(s) for s, _ in pairs}) == 500
    for src, iso in pairs[:50]:
        year, month, day = ("".join(part.split()) for part in " ".join(iso).split(" - "))
        spoken = date(int(year), int(month), int(day))
        assert " ".join(src) in {form(spoken) for form in seq2seq.DATE_FORMATS}


def test_seq2seq_learns_dates_shows_attention_and_translates_from_the_run(tmp_path, capsys):
    run_dir = run_recipe(tmp_path, "seq2seq", "--synthetic", "400", "--epochs", "3", *SEQ2SEQ,
                         "--translate", "the first of may two thousand")
    assert_learns(run_dir)
    out = capsys.readouterr().out
    assert "kept 400 of 400 pairs" in out and "val with beam 2: exact_match " in out
    assert "the first of may two thousand -> " in out
    assert (run_dir / "images" / "val-attention.png").read_bytes().startswith(b"\x89PNG")
    assert "val/attention" in tags(run_dir, "images")
    assert "val/translations/text_summary" in tags(run_dir, "tensors")
    assert cli.main(["recipe", "seq2seq", "--from", str(run_dir), "--translate", "may 1 , 2 0 0 0",
                     "--beam", "3"]) == 0
    assert capsys.readouterr().out.startswith("may 1 , 2 0 0 0 -> ")


def write_lines(path, sentences):
    path.write_text("".join(f"{s}\n" for s in sentences))
    return path


@pytest.fixture(scope="module")
def dialogue_files(tmp_path_factory):
    """Dialogue pairs: a question, and the reply that names its last word's number."""
    folder = tmp_path_factory.mktemp("dialogue")
    rng = np.random.default_rng(0)
    words = ["one", "two", "three", "four", "five"]
    questions = [" ".join(rng.choice(["so", "what", "is", "it", "now"], 3)) + " " + w + " ?"
                 for w in rng.choice(words, 180)]
    replies = [f"It is {words.index(q.split()[-2]) + 1}." for q in questions]
    questions[0] = "what " * 40  # dropped by the length filter
    return {"--src": write_lines(folder / "q.txt", questions[:150]),
            "--tgt": write_lines(folder / "a.txt", replies[:150]),
            "--val-src": write_lines(folder / "vq.txt", questions[150:]),
            "--val-tgt": write_lines(folder / "va.txt", replies[150:])}


def file_flags(files):
    return [str(part) for flag, path in files.items() for part in (flag, path)]


def test_seq2seq_chatbot_shares_one_embedding_and_reverses_the_input(tmp_path, dialogue_files, capsys):
    run_dir = run_recipe(tmp_path, "seq2seq", *file_flags(dialogue_files), "--chatbot", "--max-len", "12",
                         "--epochs", "3", *SEQ2SEQ)
    assert_learns(run_dir)
    assert "kept 149 of 150 pairs; dropped 1 with a side longer than 12 tokens" in capsys.readouterr().out
    header, arrays = checkpoint.read(RunDir(run_dir).checkpoint_path())
    assert "model/src_embed.weight" in arrays and "model/tgt_embed.weight" not in arrays
    assert header["meta"]["chatbot"] and header["meta"]["src_vocab"] == header["meta"]["tgt_vocab"]
    vocab = Vocabulary.from_json(header["meta"]["src_vocab"])
    assert list(seq2seq.source_ids(["what", "is", "?"], vocab, reverse=True)) == \
        [vocab.index["?"], vocab.index["is"], vocab.index["what"]]


def test_seq2seq_resumes_exactly(tmp_path):
    assert_resumes_exactly(tmp_path, "seq2seq", "--synthetic", "150", *SEQ2SEQ, "--layers", "2")


def test_seq2seq_names_a_missing_or_malformed_file(tmp_path, dialogue_files, capsys):
    logdir = tmp_path / "runs"
    err = one_line_error(capsys, "seq2seq", logdir=logdir)
    assert "--src FILE --tgt FILE --val-src FILE --val-tgt FILE required" in err and "--synthetic" in err
    files = dict(dialogue_files)
    files["--val-tgt"] = write_lines(tmp_path / "short.txt", ["It is 1."])
    err = one_line_error(capsys, "seq2seq", *file_flags(files), logdir=logdir)
    assert "vq.txt has 30 lines but" in err and "short.txt has 1" in err
    files["--val-tgt"] = write_lines(tmp_path / "blank.txt", [""])
    assert "blank.txt: no sentences" in one_line_error(capsys, "seq2seq", *file_flags(files), logdir=logdir)
    files["--val-tgt"] = tmp_path / "missing.txt"
    assert "not found" in one_line_error(capsys, "seq2seq", *file_flags(files), logdir=logdir)
    assert "give the text" in one_line_error(capsys, "seq2seq", "--from", str(tmp_path), logdir=logdir)


# -- dmn ------------------------------------------------------------------------------------------
BABI = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel picked up the apple.
5 Daniel took the milk.
6 What is Daniel carrying?\tapple,milk\t4 5
1 Sandra went to the garden.
2 Where is Sandra?\tgarden\t1
"""


def test_babi_questions_see_only_the_statements_before_them_in_their_story():
    examples = dmn.parse_babi(BABI.splitlines(), "qa.txt")
    assert [(len(story), question, answer) for story, question, answer in examples] == [
        (2, ["where", "is", "mary"], "bathroom"), (4, ["what", "is", "daniel", "carrying"], "apple,milk"),
        (1, ["where", "is", "sandra"], "garden")]
    assert examples[2][0] == [["sandra", "went", "to", "the", "garden"]]
    vocab = dmn.vocabulary(examples)
    stories, questions, answers = dmn.encode(examples, vocab, memories=3, length=4)
    assert stories.shape == (3, 3, 4) and questions.shape == (3, 4)
    assert vocab.decode(stories[1, 2]) == ["daniel", "took", "the", "milk"]  # the latest statement last
    assert vocab.decode(stories[1, 0]) == ["john", "went", "to", "the"]  # the oldest one left out
    assert not stories[2, :2].any() and vocab.decode(answers) == ["bathroom", "apple,milk", "garden"]


@pytest.mark.parametrize("lines, message", [
    (["1 Mary moved to the bathroom.", "2 Where is Mary?\t\t1"], "qa.txt line 2: a question without an answer"),
    (["1 Mary moved to the bathroom.", "2 Where is Mary?"],
     "qa.txt line 2: a question without its tab-separated answer"),
    (["1 Mary moved to the bathroom.", "3 Where is Mary?\tbathroom\t1"],
     "qa.txt line 2: numbered 3 after 1; a story's lines count up from 1"),
    (["1 Mary moved to the bathroom.", "2 Where is Mary?\tbathroom\t7"],
     r"qa.txt line 2: supporting facts 7 are not all statement lines of this story \(it has 1 so far\)"),
    (["1 Mary moved to the bathroom.", "2 Where is Mary?\tbathroom\t2"], "supporting facts 2 are not all"),
    ([f"{n} Mary moved to the bathroom." for n in range(1, dmn.MAX_STORY + 2)],
     f"line {dmn.MAX_STORY + 1}: a story of more than {dmn.MAX_STORY} lines; does the numbering ever restart"),
])
def test_babi_files_that_break_the_format_are_named_by_line(lines, message):
    with pytest.raises(DatasetError, match=message):
        dmn.parse_babi(lines, "qa.txt")


@pytest.fixture(scope="module")
def babi_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("babi")
    rng = np.random.default_rng(0)
    return {"--train": write_lines(folder / "qa_train.txt", dmn.synthetic_babi(250, rng)),
            "--test": write_lines(folder / "qa_test.txt", dmn.synthetic_babi(50, rng))}


DMN = ["--dim", "12", "--hops", "2", "--batch-size", "16", "--lr", "0.01"]


@pytest.mark.parametrize("model", ["dmn", "memn2n"])
def test_dmn_and_its_baseline_train_from_babi_files(tmp_path, babi_files, model, capsys):
    run_dir = run_recipe(tmp_path, "dmn", *file_flags(babi_files), "--model", model, "--epochs", "3", *DMN)
    assert_learns(run_dir)
    out = capsys.readouterr().out
    assert f"dmn ({model}): " in out and "225 training, 25 validation, 50 test questions" in out
    assert "test accuracy:" in out


@pytest.fixture
def one_thread():
    """--threads 1 for a test's runs (steady on a busy machine), this process's limits restored."""
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    with threadpool_limits(limits=None):
        yield ["--threads", "1"]
    numba.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("model, epochs", [("dmn", 6), ("memn2n", 20)])
def test_dmn_and_its_baseline_answer_the_generated_task(tmp_path, model, epochs, one_thread):
    run_dir = run_recipe(tmp_path, "dmn", "--synthetic", "1000", "--model", model, "--epochs", str(epochs),
                         *one_thread)
    assert checkpoint.read(RunDir(run_dir).checkpoint_path())[0]["meta"]["history"][-1]["val_accuracy"] >= 0.9
    summary = (run_dir / "summary.txt").read_text()
    assert float(summary.split("test accuracy: ")[1].split("%")[0]) >= 90


def test_dmn_resumes_exactly(tmp_path):
    assert_resumes_exactly(tmp_path, "dmn", "--synthetic", "120", *DMN)


def test_dmn_names_a_missing_or_malformed_file(tmp_path, capsys):
    logdir = tmp_path / "runs"
    err = one_line_error(capsys, "dmn", logdir=logdir)
    assert "--train FILE is required" in err and "bAbI" in err and "--synthetic" in err
    babi = tmp_path / "qa.txt"
    assert "not found" in one_line_error(capsys, "dmn", "--train", str(babi), logdir=logdir)
    for text, message in (("\n", "qa.txt: no questions"),
                          ("1 Mary went home.\nWhere is Mary?\thome\t1\n", "qa.txt line 2: no line number"),
                          ("1 Mary went home.\n2 Where is Mary?\thome\n", "qa.txt line 2: a question with 2")):
        babi.write_text(text)
        assert message in one_line_error(capsys, "dmn", "--train", str(babi), logdir=logdir)


# -- mnist-sequence -------------------------------------------------------------------------------
def test_mnist_sequences_put_three_whole_digits_in_a_row_as_the_book_does():
    digits = np.full((5, 28, 28), 255, dtype=np.uint8)  # solid blocks show where each digit went
    canvases, labels = mnist_sequence.make_sequences(digits, np.arange(5), 40, np.random.default_rng(0),
                                                     distortions=0)
    assert canvases.shape == (40, 1, 100, 100) and canvases.dtype == np.uint8 and labels.shape == (40, 3)
    for canvas in canvases[:, 0]:
        columns = np.flatnonzero(canvas.any(axis=0))
        assert len(columns) == 84 and columns[-1] - columns[0] == 83 and 0 <= columns[0] <= 15
        assert canvas.sum() == 3 * 28 * 28 * 255  # three whole digits, none over another
    noisy, _ = mnist_sequence.make_sequences(digits, np.arange(5), 40, np.random.default_rng(0))
    assert (noisy > 0).sum() > (canvases > 0).sum()  # the 9x9 distortions


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("data") / "mnist", n_train=100, n_test=30)


MNIST_SEQUENCE = ["--validation", "40", "--train-size", "60", "--eval-size", "20", "--locator", "4,4",
                  "--hidden", "8", "--filters", "4,4", "--dense", "16", "--batch-size", "20",
                  "--lr", "0.003"]


def test_mnist_sequence_learns_and_shows_its_crops(tmp_path, digits, capsys):
    run_dir = run_recipe(tmp_path, "mnist-sequence", "--data", str(digits), "--epochs", "3", *MNIST_SEQUENCE)
    epochs = history(run_dir)  # 9 steps fit the training canvases; telling new ones apart takes thousands
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] and "val_sequence_accuracy" in epochs[-1]
    assert tags(run_dir, "images") == {"sequence/canvases", "sequence/crops"}
    assert (run_dir / "images" / "sequence-crops.png").read_bytes().startswith(b"\x89PNG")
    assert "of the digits right" in capsys.readouterr().out


def test_mnist_sequence_resumes_exactly(tmp_path, digits):
    assert_resumes_exactly(tmp_path, "mnist-sequence", "--data", str(digits), *MNIST_SEQUENCE)


def test_mnist_sequence_names_missing_or_malformed_files(tmp_path, digits, capsys):
    logdir = tmp_path / "runs"
    err = one_line_error(capsys, "mnist-sequence", logdir=logdir)
    assert "mnist is not in" in err and "put train-images-idx3-ubyte.gz" in err  # offline in tests
    broken = tmp_path / "broken"
    shutil.copytree(digits, broken)
    (broken / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09")
    assert "does not match its header" in one_line_error(capsys, "mnist-sequence", "--data", str(broken),
                                                          logdir=logdir)
    (broken / "t10k-labels-idx1-ubyte").unlink()
    assert "missing" in one_line_error(capsys, "mnist-sequence", "--data", str(broken), logdir=logdir)
