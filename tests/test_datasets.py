"""Dataset readers on small files the tests write: IDX (good, gzip, truncated, wrong magic), text."""
import gzip
import struct

import numpy as np
import pytest

from workbench import datasets
from workbench.datasets import DatasetError


def write_idx(path, array, type_code=0x08, compress=False):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def make_mnist(folder, n=5, compress=True):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", images, compress=compress)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", labels, compress=compress)
    return images, labels


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_round_trip(tmp_path, compress):
    images, labels = make_mnist(tmp_path, compress=compress)
    got_images, got_labels = datasets.load_mnist(tmp_path, "train")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_idx_other_dtypes(tmp_path):
    values = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    np.testing.assert_array_equal(datasets.read_idx(write_idx(tmp_path / "a", values, 0x0C)), values)
    floats = np.linspace(0, 1, 4, dtype=np.float32)
    np.testing.assert_array_equal(datasets.read_idx(write_idx(tmp_path / "b", floats, 0x0D)), floats)


def test_truncated_idx_is_named(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: size .* truncated"):
        datasets.read_idx(path)


def test_truncated_gzip_is_named(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((3, 28, 28), np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError, match=r"x.gz: gzip data is truncated"):
        datasets.read_idx(path)


def test_wrong_magic_is_named(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(DatasetError, match=r"labels: not an IDX file \(magic 504b0304"):
        datasets.read_idx(path)


def test_mnist_labels_outside_0_to_9_are_refused_when_loading(tmp_path):
    make_mnist(tmp_path, compress=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 1, 12, 0, 10], np.uint8))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: labels must be 0-9; label 2 is 12 "
                                           r"\(2 of 5 are outside 0-9\)$"):
        datasets.load_mnist(tmp_path)


def test_mnist_files_of_another_element_type_are_named(tmp_path):
    make_mnist(tmp_path, compress=False)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.int8), 0x09)
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: MNIST files hold unsigned bytes "
                                           r"\(IDX type 08, magic 0000080N\), not int8$"):
        datasets.load_mnist(tmp_path)


def test_a_magic_with_the_wrong_dimension_count_is_named_beside_the_size(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    payload = write_idx(path, np.arange(60, dtype=np.uint8)).read_bytes()
    path.write_bytes(payload[:3] + b"\x03" + payload[4:])  # 0x0803: three sizes where one is
    with pytest.raises(DatasetError, match=r"magic 00000803: .*; truncated, or a wrong magic\?$"):
        datasets.read_idx(path)


def test_missing_mnist_file_says_where(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match=r"missing .*train-labels-idx1-ubyte\[\.gz\]: --data names a "
                                           r"folder holding the MNIST IDX files .*; leave --data out"):
        datasets.load_mnist(tmp_path)
    with pytest.raises(DatasetError, match="--data folder not found: .*nowhere; it should hold"):
        datasets.load_mnist(tmp_path / "nowhere")


def test_vocabularies_round_trip():
    chars = datasets.Vocabulary.of_chars("hello world")
    assert "".join(chars.decode(chars.encode(list("world hello")))) == "world hello"
    with pytest.raises(DatasetError, match="not in the vocabulary"):
        chars.encode(list("xyz"))
    tokens = datasets.words("The cat. The dog's bone; the end")
    vocab = datasets.Vocabulary.of_words(tokens, min_count=2)
    assert vocab.tokens == ["<unk>", "the"]
    assert vocab.decode(vocab.encode(["the", "cat"])) == ["the", "<unk>"]
    assert datasets.Vocabulary.from_json(vocab.to_json()).tokens == vocab.tokens


def test_split_and_minibatches_cover_everything():
    train, val, test = datasets.split_indices(100, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    x = np.arange(10)
    first = np.concatenate([b[0] for b in datasets.minibatches((x,), 3, np.random.default_rng(0))])
    second = np.concatenate([b[0] for b in datasets.minibatches((x,), 3, np.random.default_rng(1))])
    assert sorted(first.tolist()) == list(range(10)) and first.tolist() != second.tolist()


def test_bptt_rows_continue_across_batches():
    ids = np.arange(101)
    batches = list(datasets.bptt_batches(ids, batch_size=4, seq_len=5))
    assert len(batches) == 5
    (x0, y0), (x1, _) = batches[0], batches[1]
    np.testing.assert_array_equal(y0, x0 + 1)
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # row b continues row b
    with pytest.raises(DatasetError, match="too short"):
        list(datasets.bptt_batches(np.arange(10), batch_size=4, seq_len=5))


def test_pca_whitening_gives_identity_covariance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]])
    white = datasets.PCAWhitening().fit(x).transform(x)
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(3), atol=1e-3)
    assert datasets.PCAWhitening(components=2).fit(x).transform(x).shape == (500, 2)
