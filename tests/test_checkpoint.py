"""Checkpoints: bit-exact round trips, every error case with its one-line message, atomic writes."""
import json
import os
import re

import numpy as np
import pytest

import nets
from nets import F, checkpoint, optim
from nets.checkpoint import CheckpointError
from nets.gradcheck import to_float64


class Counted(nets.Module):
    """An MLP with an int64 buffer, so that non-float entries and dtypes are covered too."""

    def __init__(self, hidden=8):
        super().__init__()
        self.body = nets.Sequential(nets.Linear(4, hidden), F.relu, nets.Linear(hidden, 3))
        self.register_buffer("updates", np.zeros(2, dtype=np.int64))

    def forward(self, x):
        return self.body(x)


def trained(steps=3, hidden=8, seed=0):
    nets.seed(seed)
    model = Counted(hidden)
    opt = optim.RMSProp(model, lr=0.01, eps=0.1, eps_inside_sqrt=True, centered=True)
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    for _ in range(steps):
        train_step(model, opt, x, y)
    return model, opt, (x, y)


def train_step(model, opt, x, y):
    opt.zero_grad()
    F.softmax_cross_entropy(model(x), y).backward()
    opt.step()
    model.updates += 1


def error(path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def saved(tmp_path):
    model, opt, data = trained()
    path = tmp_path / "run" / "checkpoints" / "last.npz"  # folders are created
    checkpoint.save(path, model, opt, meta={"step": 3, "env": "CartPole-v1", "net": [4, 8, 3]})
    return path, model, opt, data


def test_round_trip_is_bit_exact_and_training_continues_identically(saved):
    path, model, opt, (x, y) = saved
    fresh, fresh_opt, _ = trained(steps=0, seed=1)
    assert not np.array_equal(fresh.flat().data, model.flat().data)
    meta = checkpoint.load(path, fresh, fresh_opt)
    assert meta == {"step": 3, "env": "CartPole-v1", "net": [4, 8, 3]}
    for name, value in model.state_dict().items():
        loaded = fresh.state_dict()[name]
        assert loaded.dtype == value.dtype and np.array_equal(loaded, value), name
    assert fresh_opt.steps == opt.steps == 3
    for name, vector in opt.state.items():
        np.testing.assert_array_equal(fresh_opt.state[name], vector)
    for _ in range(2):
        train_step(model, opt, x, y)
        train_step(fresh, fresh_opt, x, y)
    np.testing.assert_array_equal(fresh.flat().data, model.flat().data)


def test_load_without_model_returns_meta_and_read_exposes_everything(saved):
    path, model, opt, _ = saved
    assert checkpoint.load(path)["env"] == "CartPole-v1"
    header, arrays = checkpoint.read(path)
    assert (header["format"], header["version"]) == ("workbench-checkpoint", 1)
    entries = {e["name"]: e for e in header["model"]["entries"]}
    assert entries["body.0.weight"] == {"name": "body.0.weight", "shape": [4, 8], "dtype": "<f4"}
    assert entries["updates"]["dtype"] == "<i8"
    assert header["optimizer"]["type"] == "RMSProp"
    np.testing.assert_array_equal(arrays["model/body.2.bias"], model.body[2].bias.data)
    np.testing.assert_array_equal(arrays["optimizer/square_avg"], opt.state["square_avg"])
    with np.load(path, allow_pickle=False) as raw:  # a plain npz, no pickle needed
        assert json.loads(raw["__header__"].tobytes())["meta"]["step"] == 3


def test_a_checkpoint_gets_a_new_file_s_mode_not_its_temporary_file_s_0600(saved):
    path = saved[0]
    umask = os.umask(0o022)
    try:
        checkpoint.save(path, *saved[1:3])
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # others may play a run they can read the rest of


def test_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    assert error(path) == f"no checkpoint at {path}"


def test_truncated_file(saved):
    path = saved[0]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    assert re.fullmatch(r".* is truncated or corrupt \(not a zip archive.*\)", error(path, model=saved[1]))


def test_flipped_bytes_fail_the_crc(saved):
    path, model = saved[0], saved[1]
    raw = bytearray(path.read_bytes())
    at = raw.find(model.body[0].weight.data.tobytes())
    assert at > 0
    raw[at + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    before = model.flat().data.copy()
    assert error(path, model=model).endswith("is truncated or corrupt (Bad CRC-32 for file "
                                              "'model/body.0.weight.npy')")
    np.testing.assert_array_equal(model.flat().data, before)


def test_any_damage_is_a_checkpoint_error(saved):
    path, model = saved[0], saved[1]
    raw = path.read_bytes()
    refused = 0
    for position in range(0, len(raw), 97):
        damaged = bytearray(raw)
        damaged[position] ^= 0x5A
        path.write_bytes(bytes(damaged))
        try:
            checkpoint.load(path, model=model)
        except CheckpointError:  # anything else escaping fails the test
            refused += 1
    # a few bytes (zip timestamps, attributes) are checked by nothing; the rest are refused
    assert refused > 0.6 * len(range(0, len(raw), 97))


def test_plain_npz_without_header(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.zeros(3))
    assert "is not a workbench checkpoint (no __header__ entry" in error(path)
    npy = tmp_path / "weights.npy"
    np.save(npy, np.zeros(3))
    assert "is truncated or corrupt (not a zip archive" in error(npy)


def test_damaged_or_foreign_header(tmp_path):
    path = tmp_path / "h.npz"
    np.savez(path, __header__=np.frombuffer(b"{not json", dtype=np.uint8))
    assert "has an unreadable header (JSONDecodeError" in error(path)
    np.savez(path, __header__=np.frombuffer(b'{"format": "other", "version": 1}', dtype=np.uint8))
    assert error(path).endswith("is not a workbench checkpoint (format 'other', expected "
                                "'workbench-checkpoint')")
    header = {"format": "workbench-checkpoint", "version": 1, "model": {}}
    np.savez(path, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    assert error(path).endswith("has an unreadable header (KeyError: 'entries')")


def test_unknown_format_version(saved, monkeypatch, tmp_path):
    path, model = saved[0], saved[1]
    monkeypatch.setattr(checkpoint, "VERSION", 2)
    checkpoint.save(path, model)
    monkeypatch.undo()
    assert error(path).endswith("has checkpoint format version 2 (written by a newer workbench); "
                                "this workbench reads version 1")


def test_parameter_names_must_match(saved):
    path = saved[0]
    other = nets.Sequential(nets.Linear(4, 8), F.relu, nets.Linear(8, 3))
    message = error(path, model=other)
    assert message.endswith("does not fit Sequential: missing ['0.bias', '0.weight', '2.bias', "
                            "'2.weight'], unexpected ['body.0.bias', 'body.0.weight', 'body.2.bias', "
                            "'body.2.weight', 'updates']")


def test_layer_size_change_is_a_shape_mismatch(saved):
    path = saved[0]
    wider = Counted(hidden=9)
    assert error(path, model=wider).endswith(
        "shape mismatch for 'body.0.weight': checkpoint (4, 8), model (4, 9)")


def test_dtype_mismatch(saved):
    path = saved[0]
    assert error(path, model=to_float64(Counted())).endswith(
        "dtype mismatch for 'body.0.weight': checkpoint float32, model float64")


def test_optimizer_mismatches_and_failed_loads_change_nothing(saved, tmp_path):
    path, model = saved[0], saved[1]
    fresh = Counted()
    before = fresh.flat().data.copy()
    adam = optim.Adam(fresh)
    assert error(path, model=fresh, optimizer=adam).endswith("optimizer state is for RMSProp, not Adam")
    np.testing.assert_array_equal(fresh.flat().data, before)
    assert adam.steps == 0 and not adam.state["m"].any()
    plain = optim.RMSProp(fresh, lr=0.01)
    assert error(path, model=fresh, optimizer=plain).endswith(
        "optimizer state has centered=True, this RMSProp has centered=False")
    bare = tmp_path / "bare.npz"
    checkpoint.save(bare, model)
    assert error(bare, model=fresh, optimizer=adam) == f"{bare} holds no optimizer state"


def test_meta_must_be_json(tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(CheckpointError, match="meta must be JSON-serializable"):
        checkpoint.save(path, Counted(), meta={"array": np.zeros(2)})
    assert not path.exists() and os.listdir(tmp_path) == []


def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temp_file(saved, monkeypatch):
    path, model, opt, (x, y) = saved
    previous = path.read_bytes()
    train_step(model, opt, x, y)
    real_savez = np.savez

    def savez_then_fail(file, **arrays):
        real_savez(file, **arrays)  # a complete temp file, then the failure (disk full, Ctrl-C...)
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, model, opt, meta={"step": 4})
    monkeypatch.undo()
    assert path.read_bytes() == previous
    assert os.listdir(path.parent) == [path.name]
    assert checkpoint.load(path)["step"] == 3
    checkpoint.save(path, model, opt, meta={"step": 4})  # and a good write replaces it
    assert checkpoint.load(path)["step"] == 4
    assert os.listdir(path.parent) == [path.name]
