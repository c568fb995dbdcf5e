"""Datasets that arrive by themselves (workbench.downloads), against a loopback HTTP server: no
test touches the internet."""
import hashlib
import http.server
import threading

import numpy as np
import pytest

from test_datasets import write_idx
from workbench import cli, downloads
from workbench.datasets import load_mnist

BODY = b"To be, or not to be, that is the question:\n" * 2000


class Server(http.server.ThreadingHTTPServer):
    """Serves `files` (path -> bytes); a path in `truncated` announces its full length and closes
    after half of it."""

    def __init__(self):
        self.files, self.truncated, self.requests = {}, set(), []
        super().__init__(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if self.path in self.server.truncated else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    server = Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed, into an empty data folder."""
    monkeypatch.delenv("WORKBENCH_OFFLINE")
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def serve(monkeypatch, server, dataset, files: dict[str, bytes], checksums: dict[str, str] | None = None,
          mirrors=("/a/",)):
    """Make `dataset` a catalogue entry whose files `server` serves under each mirror path."""
    remotes = []
    for name, body in files.items():
        for mirror in mirrors:
            server.files[mirror + name] = body
        checksum = (checksums or {}).get(name) or f"sha256:{hashlib.sha256(body).hexdigest()}"
        remotes.append(downloads.Remote(name, tuple(server.url(m + name) for m in mirrors), checksum, len(body)))
    monkeypatch.setitem(downloads.DATASETS, dataset, tuple(remotes))


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_download_with_the_right_checksum_lands_once(monkeypatch, server, online):
    serve(monkeypatch, server, "tiny-shakespeare", {"input.txt": BODY})
    path = downloads.text_file("tiny-shakespeare")
    assert path == online / "tiny-shakespeare" / "input.txt" and path.read_bytes() == BODY
    assert downloads.text_file("tiny-shakespeare") == path and len(server.requests) == 1  # cached
    assert leftovers(path.parent) == ["input.txt"]


def test_a_checksum_mismatch_keeps_nothing_and_says_so(monkeypatch, server, online):
    serve(monkeypatch, server, "tiny-shakespeare", {"input.txt": BODY}, {"input.txt": "sha256:" + "0" * 64})
    with pytest.raises(downloads.DownloadError, match=r"sha256 of the download is [0-9a-f]{64}, expected 0+.*"
                                                      r"nothing was kept.*put input.txt into"):
        downloads.text_file("tiny-shakespeare")
    assert not online.exists()  # nor the folders made for it


def test_a_kept_file_that_is_not_the_published_one_is_refused(monkeypatch, server, online):
    serve(monkeypatch, server, "tiny-shakespeare", {"input.txt": BODY})
    (online / "tiny-shakespeare").mkdir(parents=True)
    (online / "tiny-shakespeare" / "input.txt").write_bytes(BODY[:1000])  # cut short by hand
    with pytest.raises(downloads.DownloadError, match=r"input.txt is not the published input.txt \(1,000 bytes, "
                                                      r"sha256 [0-9a-f]{64}; expected 86,000 bytes, .*\): delete it"):
        downloads.text_file("tiny-shakespeare")
    assert server.requests == []


def test_a_truncated_download_keeps_nothing_and_the_next_mirror_serves(monkeypatch, server, online):
    serve(monkeypatch, server, "tiny-shakespeare", {"input.txt": BODY}, mirrors=("/cut/", "/whole/"))
    server.truncated.add("/cut/input.txt")
    path = downloads.text_file("tiny-shakespeare")
    assert path.read_bytes() == BODY and server.requests == ["/cut/input.txt", "/whole/input.txt"]
    assert leftovers(path.parent) == ["input.txt"]
    server.truncated.add("/whole/input.txt")
    path.unlink()
    with pytest.raises(downloads.DownloadError, match="cannot download tiny-shakespeare's input.txt"):
        downloads.text_file("tiny-shakespeare")
    assert leftovers(path.parent) == []


def test_an_interrupted_download_keeps_nothing(monkeypatch, server, online):
    serve(monkeypatch, server, "tiny-shakespeare", {"input.txt": BODY})
    monkeypatch.setattr(downloads, "CHUNK", 1000)

    class Interrupted(downloads.tqdm):
        def update(self, n=1):
            raise KeyboardInterrupt  # Ctrl-C after the first chunk was written

    monkeypatch.setattr(downloads, "tqdm", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        downloads.text_file("tiny-shakespeare")
    assert leftovers(online / "tiny-shakespeare") == []


def test_server_down_names_the_manual_route(monkeypatch, server, online):
    serve(monkeypatch, server, "mnist", {"train-images-idx3-ubyte.gz": b"x"})
    server.files.clear()  # every request is a 404
    with pytest.raises(downloads.DownloadError, match=r"Not Found\); nothing was kept\. To work offline, put "
                                                      r"train-images-idx3-ubyte.gz into .*/data/mnist \(or set "
                                                      r"WORKBENCH_DATA"):
        downloads.fetch("mnist")
    monkeypatch.setenv("WORKBENCH_OFFLINE", "1")
    with pytest.raises(downloads.DownloadError, match="mnist is not in .* and WORKBENCH_OFFLINE is set; put "):
        downloads.fetch("mnist")


def test_data_folder_order_env_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "mine"))
    assert downloads.data_root() == tmp_path / "mine"
    monkeypatch.delenv("WORKBENCH_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert downloads.data_root() == tmp_path / "xdg" / "workbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert downloads.data_root() == tmp_path / "home" / ".cache" / "workbench"


def test_a_text_file_named_like_a_corpus_is_read_as_a_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-shakespeare").write_text("mine")
    assert downloads.text_file("tiny-shakespeare").read_text() == "mine"
    assert downloads.text_file("notes.txt").name == "notes.txt"  # a path, read (or refused) later


def test_mnist_recipe_downloads_without_data_and_data_wins_over_the_cache(monkeypatch, server, online,
                                                                           tmp_path, capsys):
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (60, 28, 28), np.uint8), rng.integers(0, 256, (20, 28, 28), np.uint8)
    train_y, test_y = rng.integers(0, 10, 60, np.uint8), rng.integers(0, 10, 20, np.uint8)
    arrays = {"train-images-idx3-ubyte": train_x, "train-labels-idx1-ubyte": train_y,
              "t10k-images-idx3-ubyte": test_x, "t10k-labels-idx1-ubyte": test_y}
    files = {f"{name}.gz": write_idx(tmp_path / f"{name}.gz", array, compress=True).read_bytes()
             for name, array in arrays.items()}
    serve(monkeypatch, server, "mnist", files,
          {n: f"md5:{hashlib.md5(b).hexdigest()}" for n, b in files.items()})  # MNIST's are MD5s
    flags = ["--logdir", str(tmp_path / "runs"), "--epochs", "1", "--validation", "10", "--hidden", "8",
             "--batch-size", "10", "--no-progress"]
    assert cli.main(["recipe", "mnist-mlp", *flags]) == 0
    assert "epochs: 1 (5 steps)" in capsys.readouterr().out  # the 50 downloaded training images
    images, labels = load_mnist(online / "mnist", "test")
    assert np.array_equal(images, test_x) and np.array_equal(labels, test_y)
    requests = len(server.requests)
    own = tmp_path / "own"  # --data: the user's folder, never the cache
    own.mkdir()
    for name, array in arrays.items():
        write_idx(own / name, array[:30] if name.startswith("train") else array)
    assert cli.main(["recipe", "mnist-mlp", *flags, "--data", str(own)]) == 0
    assert len(server.requests) == requests == 4
    assert "epochs: 1 (2 steps)" in capsys.readouterr().out  # its 20 training images
