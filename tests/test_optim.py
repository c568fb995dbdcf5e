"""Optimizers against hand-written update formulas, Numba kernels against the array versions,
clipping, schedules, state round-trips, shared state, and an MLP that overfits."""
import math

import numpy as np
import pytest

import nets
from nets import F, optim
from nets.kernels import optim as K
from nets.module import FlatParameters

P0 = np.array([0.5, -1.0, 0.0, 2.0], dtype=np.float32)
# gradients for three steps, with sign flips, a zero and a repeat, to exercise every branch
GRADS = np.array([[0.1, -0.2, 0.3, 0.0],
                  [0.2, 0.1, -0.3, 0.5],
                  [0.2, -0.4, -0.1, -0.5]], dtype=np.float32)


def tiny(p=P0):
    w = nets.Parameter(p.copy())
    return FlatParameters(w.data, w.grad, ["w"], [w.shape], [w])


def run(opt, grads=GRADS):
    history = []
    for g in grads:
        opt.flat.grad[:] = g
        opt.step()
        history.append(opt.flat.data.copy())
    return np.array(history)


# -- the update rules written out by hand, in float64 ----------------------------------------------
def effective(p, g, wd=0.0, l1=0.0):
    return g + wd * p + l1 * np.sign(p)


def ref_sgd(lr, momentum=0.0, nesterov=False, wd=0.0, l1=0.0):
    p, v, out = P0.astype(np.float64), np.zeros(4), []
    for g in GRADS:
        d = effective(p, g, wd, l1)
        if momentum:
            v = momentum * v + d
            d = d + momentum * v if nesterov else v
        p = p - lr * d
        out.append(p)
    return np.array(out)


def ref_adagrad(lr, eps=1e-8):
    p, h, out = P0.astype(np.float64), np.zeros(4), []
    for g in GRADS:
        h = h + g * g
        p = p - lr * g / (np.sqrt(h) + eps)
        out.append(p)
    return np.array(out)


def ref_adadelta(lr=1.0, rho=0.95, eps=1e-6):
    p, eg, edx, out = P0.astype(np.float64), np.zeros(4), np.zeros(4), []
    for g in GRADS:
        eg = rho * eg + (1 - rho) * g * g
        dx = np.sqrt(edx + eps) / np.sqrt(eg + eps) * g
        edx = rho * edx + (1 - rho) * dx * dx
        p = p - lr * dx
        out.append(p)
    return np.array(out)


def ref_rmsprop(lr, alpha=0.99, eps=1e-8, centered=False, inside=False, wd=0.0):
    p, ms, mg, out = P0.astype(np.float64), np.zeros(4), np.zeros(4), []
    for g in GRADS:
        d = effective(p, g, wd)
        ms = alpha * ms + (1 - alpha) * d * d
        var = ms
        if centered:
            mg = alpha * mg + (1 - alpha) * d
            var = ms - mg * mg
        p = p - lr * d / (np.sqrt(var + eps) if inside else np.sqrt(var) + eps)
        out.append(p)
    return np.array(out)


def ref_adam(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, l1=0.0):
    p, m, v, out = P0.astype(np.float64), np.zeros(4), np.zeros(4), []
    for t, g in enumerate(GRADS, start=1):
        d = effective(p, g, l1=l1)
        m = b1 * m + (1 - b1) * d
        v = b2 * v + (1 - b2) * d * d
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return np.array(out)


def ref_sign_adaptive(lr, up=0.05, down=0.95, low=0.1, high=10.0):
    p, gain, prev, out = P0.astype(np.float64), np.ones(4), np.zeros(4), []
    for g in GRADS:
        agree = np.sign(g) * np.sign(prev)
        gain = np.where(agree > 0, gain + up, np.where(agree < 0, gain * down, gain))
        gain = np.clip(gain, low, high)
        p = p - lr * gain * g
        prev = g
        out.append(p)
    return np.array(out)


CASES = {
    "sgd": (lambda f: optim.SGD(f, lr=0.1), ref_sgd(0.1)),
    "momentum": (lambda f: optim.SGD(f, lr=0.1, momentum=0.9), ref_sgd(0.1, 0.9)),
    "nesterov": (lambda f: optim.SGD(f, lr=0.1, momentum=0.9, nesterov=True), ref_sgd(0.1, 0.9, True)),
    "sgd_l2": (lambda f: optim.SGD(f, lr=0.1, weight_decay=0.01), ref_sgd(0.1, wd=0.01)),
    "sgd_l1": (lambda f: optim.SGD(f, lr=0.1, l1=0.05), ref_sgd(0.1, l1=0.05)),
    "momentum_l2_l1": (lambda f: optim.SGD(f, lr=0.1, momentum=0.5, weight_decay=0.1, l1=0.02),
                       ref_sgd(0.1, 0.5, wd=0.1, l1=0.02)),
    "adagrad": (lambda f: optim.Adagrad(f, lr=0.1), ref_adagrad(0.1)),
    "adadelta": (lambda f: optim.AdaDelta(f), ref_adadelta()),
    "rmsprop": (lambda f: optim.RMSProp(f, lr=0.01), ref_rmsprop(0.01)),
    "rmsprop_a3c": (lambda f: optim.RMSProp(f, lr=0.01, eps=0.1, eps_inside_sqrt=True),
                    ref_rmsprop(0.01, eps=0.1, inside=True)),
    "rmsprop_centered": (lambda f: optim.RMSProp(f, lr=0.01, alpha=0.9, centered=True),
                         ref_rmsprop(0.01, alpha=0.9, centered=True)),
    "rmsprop_centered_inside_l2": (
        lambda f: optim.RMSProp(f, lr=0.01, alpha=0.95, eps=1e-4, centered=True, eps_inside_sqrt=True,
                                weight_decay=0.1),
        ref_rmsprop(0.01, alpha=0.95, eps=1e-4, centered=True, inside=True, wd=0.1)),
    "adam": (lambda f: optim.Adam(f, lr=0.01), ref_adam(0.01)),
    "adam_l1": (lambda f: optim.Adam(f, lr=0.01, l1=0.1), ref_adam(0.01, l1=0.1)),
    "sign_adaptive": (lambda f: optim.SignAdaptive(f, lr=0.1), ref_sign_adaptive(0.1)),
    "sign_adaptive_clipped": (lambda f: optim.SignAdaptive(f, lr=0.1, increase=0.5, decrease=0.5,
                                                           gain_range=(0.6, 1.4)),
                              ref_sign_adaptive(0.1, 0.5, 0.5, 0.6, 1.4)),
}


@pytest.mark.parametrize("case", CASES)
def test_update_matches_hand_written_formula(case):
    make, expected = CASES[case]
    got = run(make(tiny()))
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)
    assert not np.allclose(got[-1], P0)


def test_sgd_momentum_by_hand():
    # lr 0.1, momentum 0.9 on one weight at 1.0 with gradients 1 then 1:
    # v1 = 1, p1 = 0.9; v2 = 0.9 * 1 + 1 = 1.9, p2 = 0.9 - 0.19 = 0.71
    flat = tiny(np.array([1.0], dtype=np.float32))
    got = run(optim.SGD(flat, lr=0.1, momentum=0.9), np.ones((2, 1), dtype=np.float32))
    np.testing.assert_allclose(got[:, 0], [0.9, 0.71], rtol=1e-6)


def test_adam_first_step_is_lr_times_sign():
    # with bias correction, step 1 moves every weight by lr * g / (|g| + eps) ~ lr * sign(g)
    flat = tiny()
    opt = optim.Adam(flat, lr=0.01)
    flat.grad[:] = [0.3, -2.0, 1e-3, 5.0]
    opt.step()
    np.testing.assert_allclose(flat.data - P0, [-0.01, 0.01, -0.01, -0.01], rtol=1e-4)


def test_rmsprop_eps_placement_differs():
    outside, inside = tiny(), tiny()
    run(optim.RMSProp(outside, lr=0.01, eps=0.1))
    run(optim.RMSProp(inside, lr=0.01, eps=0.1, eps_inside_sqrt=True))
    assert not np.allclose(outside.data, inside.data)


def test_centered_rmsprop_survives_a_constant_gradient(rng):
    # ms - mg^2 is a variance of 0 here; float32 rounding pushes it below 0 after ~1100 steps
    flat = tiny(np.zeros(1000, dtype=np.float32))
    flat.grad[:] = rng.standard_normal(1000)
    opt = optim.RMSProp(flat, lr=1e-6, centered=True)
    for _ in range(1500):
        opt.step()
    assert np.isfinite(flat.data).all()


def test_gains_grow_on_agreement_and_shrink_on_flips():
    flat = tiny()
    opt = optim.SignAdaptive(flat, lr=0.1)
    run(opt, np.array([[1, 1, 1, 0], [1, -1, 1, 0], [1, 1, 1, 0]], dtype=np.float32))
    np.testing.assert_allclose(opt.state["gain"], [1.1, 0.95 * 0.95, 1.1, 1.0], rtol=1e-6)


# -- the Numba kernels against the array versions ----------------------------------------------
KERNEL_CONFIGS = [
    ("sgd", 0, dict(momentum=0.0, nesterov=False)),
    ("sgd", 1, dict(momentum=0.9, nesterov=False)),
    ("sgd", 1, dict(momentum=0.9, nesterov=True)),
    ("adagrad", 1, dict(eps=1e-8)),
    ("adadelta", 2, dict(rho=0.95, eps=1e-6)),
    ("rmsprop", 2, dict(alpha=0.99, eps=1e-8, centered=False, eps_inside_sqrt=False)),
    ("rmsprop", 2, dict(alpha=0.99, eps=0.1, centered=False, eps_inside_sqrt=True)),
    ("rmsprop", 2, dict(alpha=0.9, eps=1e-4, centered=True, eps_inside_sqrt=True)),
    ("adam", 2, dict(beta1=0.9, beta2=0.999, eps=1e-8, step_size=0.02, root2=0.04)),
    ("sign_adaptive", 2, dict(increase=0.05, decrease=0.95, low=0.1, high=10.0)),
]


@pytest.mark.parametrize("name,n_state,hyper", KERNEL_CONFIGS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(KERNEL_CONFIGS)])
@pytest.mark.parametrize("decay", [(0.0, 0.0), (0.01, 0.001)])
@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "out-of-place"])
def test_numba_kernel_matches_array_version(rng, name, n_state, hyper, decay, in_place):
    n = 1001
    p = rng.standard_normal(n).astype(np.float32)
    p[:5] = 0  # sign(0) = 0 for L1
    state = [rng.random(n).astype(np.float32) for _ in range(n_state)]
    if name == "sgd" and not hyper["momentum"]:
        state = [np.empty(0, np.float32)]
    if name == "rmsprop":  # keep ms - mg^2 positive for the centered variant
        state[0] += 1.0
        if not hyper["centered"]:
            state[1] = np.empty(0, np.float32)
    scalars = [v if isinstance(v, bool) else np.float32(v) for v in hyper.values()]
    lr, wd, l1 = np.float32(0.01), np.float32(decay[0]), np.float32(decay[1])
    a_p, a_state = p.copy(), [s.copy() for s in state]
    b_p, b_state = p.copy(), [s.copy() for s in state]
    for _ in range(3):
        g = rng.standard_normal(n).astype(np.float32)
        g_before = g.copy()
        for kernel, params, vectors in ((getattr(K, name), a_p, a_state),
                                        (getattr(K, name + "_xp"), b_p, b_state)):
            out = None if in_place else np.full_like(params, np.nan)
            before = params.copy()
            kernel(params, g, out, *vectors, lr, wd, l1, *scalars)
            if not in_place:  # the old parameters stay as they were; the new ones are in `out`
                np.testing.assert_array_equal(params, before)
                params[...] = out
        np.testing.assert_array_equal(g, g_before)  # gradients are read, never written
    assert not np.array_equal(a_p, p)
    np.testing.assert_allclose(a_p, b_p, rtol=1e-6, atol=1e-6)
    for a, b in zip(a_state, b_state):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda m: optim.Adam(m, lr=1e-3),
    lambda m: optim.RMSProp(m, lr=1e-3, centered=True),
    lambda m: optim.SGD(m, lr=1e-3, momentum=0.9),
])
def test_decaying_state_is_flushed_to_zero_instead_of_going_denormal(make):
    """A moment of a parameter whose gradient stays 0 decays geometrically into float32's
    denormals, where every x86 operation on it is ~100x slower: the CPU kernels store 0 instead.
    Normal values and NaN are kept."""
    model = nets.Linear(3, 1, bias=False)
    opt = make(model)
    smallest_normal = np.finfo(np.float32).tiny
    for vector in opt.state.values():
        vector[:] = [smallest_normal * 1.0005, 1.0, np.nan]  # one decay takes the first below
    model.flat().grad[:] = 0
    opt.step()
    for name, vector in opt.state.items():
        assert vector[0] == 0, name
        assert vector[1] > smallest_normal and np.isnan(vector[2]), name


def test_sum_of_squares_kernel(rng):
    x = rng.standard_normal(100_003).astype(np.float32)
    expected = float(np.sum(x.astype(np.float64) ** 2))
    assert K.sum_of_squares(x) == pytest.approx(expected, rel=1e-12)
    assert K.sum_of_squares_xp(x) == pytest.approx(expected, rel=1e-12)


# -- clipping ----------------------------------------------------------------------------------
def test_clip_grad_norm_scales_to_max_norm():
    flat = tiny()
    flat.grad[:] = [3.0, 0.0, -4.0, 0.0]
    assert optim.clip_grad_norm(flat, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(flat.grad, [0.6, 0.0, -0.8, 0.0], rtol=1e-6)
    assert optim.clip_grad_norm(flat, 2.0) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(flat.grad, [0.6, 0.0, -0.8, 0.0], rtol=1e-6)  # under the limit: untouched


def test_clip_grad_norm_takes_module_and_optimizer_and_leaves_nan_visible():
    model = nets.Linear(3, 2)
    model.flat().grad[:] = 10.0
    norm = optim.clip_grad_norm(model, 1.0)
    assert norm == pytest.approx(10.0 * math.sqrt(8))
    assert np.linalg.norm(model.flat().grad) == pytest.approx(1.0, rel=1e-5)
    opt = optim.SGD(model, lr=0.1)
    model.flat().grad[0] = np.nan
    assert math.isnan(optim.clip_grad_norm(opt, 1.0))
    assert np.isnan(model.flat().grad[0]) and model.flat().grad[1] != 0
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        optim.clip_grad_norm(model, 0.0)


# -- schedules ---------------------------------------------------------------------------------
def test_step_decay():
    opt = optim.SGD(tiny(), lr=1.0)
    schedule = optim.StepDecay(opt, step_size=2, gamma=0.5)
    assert [schedule.step() for _ in range(5)] == [1.0, 0.5, 0.5, 0.25, 0.25]
    assert opt.lr == 0.25


def test_linear_decay_stops_at_floor():
    opt = optim.SGD(tiny(), lr=5.0)
    schedule = optim.LinearDecay(opt, start=1.0, end=0.2, steps=4)
    assert opt.lr == 1.0
    got = [schedule.step() for _ in range(6)]
    np.testing.assert_allclose(got, [0.8, 0.6, 0.4, 0.2, 0.2, 0.2])


def test_plateau_decay_waits_for_patience_and_respects_min_lr():
    opt = optim.SGD(tiny(), lr=1.0)
    schedule = optim.PlateauDecay(opt, factor=0.5, patience=1, min_lr=0.3)
    assert [schedule.step(m) for m in [3.0, 2.0, 2.5, 2.0]] == [1.0, 1.0, 1.0, 0.5]
    assert [schedule.step(m) for m in [1.0, 1.5, 1.5, 1.5, 1.5]] == [0.5, 0.5, 0.3, 0.3, 0.3]
    maximize = optim.PlateauDecay(optim.SGD(tiny(), lr=1.0), patience=0, mode="max")
    assert [maximize.step(r) for r in [1.0, 2.0, 1.5]] == [1.0, 1.0, 0.5]


@pytest.mark.parametrize("make", [lambda o: optim.StepDecay(o, 3, 0.1),
                                  lambda o: optim.LinearDecay(o, 1.0, 0.0, 10),
                                  lambda o: optim.PlateauDecay(o, patience=2)])
def test_schedule_state_round_trip(make):
    metrics = [5.0, 4.0, 4.5, 4.5, 4.5, 4.2, 4.9]

    def advance(schedule, values):
        for m in values:
            schedule.step(m) if isinstance(schedule, optim.PlateauDecay) else schedule.step()

    first = make(optim.SGD(tiny(), lr=1.0))
    advance(first, metrics[:4])
    resumed = make(optim.SGD(tiny(), lr=1.0))
    resumed.load_state_dict(first.state_dict())
    advance(first, metrics[4:])
    advance(resumed, metrics[4:])
    assert resumed.state_dict() == first.state_dict()
    assert resumed.optimizer.lr == first.optimizer.lr
    with pytest.raises(ValueError, match="missing"):
        resumed.load_state_dict({})


# -- optimizer state ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["momentum", "adadelta", "rmsprop_centered", "adam", "sign_adaptive"])
def test_resumed_optimizer_continues_identically(case):
    make = CASES[case][0]
    first = make(tiny())
    run(first, GRADS[:2])
    state = first.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    resumed = make(tiny(first.flat.data.copy()))
    resumed.lr = 123.0  # restored from the state
    resumed.load_state_dict(state)
    assert resumed.steps == 2 and resumed.lr == first.lr
    np.testing.assert_array_equal(run(first, GRADS), run(resumed, GRADS))


def test_optimizer_state_survives_savez_without_pickle(tmp_path):
    opt = optim.RMSProp(tiny(), lr=0.01, centered=True)
    run(opt)
    np.savez(tmp_path / "s.npz", **opt.state_dict())
    with np.load(tmp_path / "s.npz", allow_pickle=False) as saved:
        state = dict(saved)
    other = optim.RMSProp(tiny(), lr=0.5, centered=True)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.state["grad_avg"], opt.state["grad_avg"])


def test_optimizer_state_errors():
    opt = optim.Adam(tiny())
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"'m' has shape \(4,\), this Adam over 5 parameters needs \(5,\)"):
        optim.Adam(tiny(np.zeros(5, np.float32))).load_state_dict(state)
    with pytest.raises(ValueError, match=r"missing \['v'\]"):
        opt.load_state_dict({k: v for k, v in state.items() if k != "v"})
    with pytest.raises(ValueError, match="optimizer state is for Adam, not RMSProp"):
        optim.RMSProp(tiny(), lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="centered=True, this RMSProp has centered=False"):
        optim.RMSProp(tiny(), lr=0.1).load_state_dict(optim.RMSProp(tiny(), lr=0.1, centered=True).state_dict())
    with pytest.raises(ValueError, match="momentum=0.0, this SGD has momentum=0.9"):
        optim.SGD(tiny(), lr=0.1, momentum=0.9).load_state_dict(optim.SGD(tiny(), lr=0.1).state_dict())


def test_hyperparameter_checks():
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.SGD(tiny(), lr=-1)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        optim.RMSProp(tiny(), lr=0.1, alpha=1.0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.SGD(tiny(), lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="params must be a Module or FlatParameters"):
        optim.SGD([np.zeros(3)], lr=0.1)


def test_shared_state_is_seen_by_every_optimizer_on_it():
    buffers = {}

    def make_buffer(name, length):
        return buffers.setdefault(name, np.zeros(length, dtype=np.float32))

    a = optim.RMSProp(tiny(), lr=0.01, eps=0.1, eps_inside_sqrt=True)
    a.share_state(make_buffer)
    b = optim.RMSProp(tiny(), lr=0.01, eps=0.1, eps_inside_sqrt=True)
    b.share_state(make_buffer, copy=False)
    assert a.state["square_avg"] is buffers["square_avg"] is b.state["square_avg"]
    run(a, GRADS[:1])
    run(b, GRADS[1:2])  # b's update uses the statistics a left behind
    expected = 0.99 * 0.01 * GRADS[0] ** 2 + 0.01 * GRADS[1] ** 2
    np.testing.assert_allclose(buffers["square_avg"], expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"buffer for 'square_avg' must be C-contiguous float32 of shape \(4,\)"):
        a.share_state(lambda name, n: np.zeros(n, dtype=np.float64))


def test_step_into_another_vector_moves_the_parameters_and_leaves_the_old_ones():
    nets.seed(0)
    model = nets.Linear(3, 2)
    opt = optim.RMSProp(model, lr=0.01, eps=0.1, eps_inside_sqrt=True)
    reference = optim.RMSProp(tiny(model.flat().data), lr=0.01, eps=0.1, eps_inside_sqrt=True)
    old = model.flat().data
    before = old.copy()
    for o in (opt, reference):
        o.flat.grad[...] = np.arange(len(o.flat), dtype=np.float32)
    into = np.empty_like(old)
    opt.step(into=into)
    reference.step()
    np.testing.assert_array_equal(old, before)  # untouched: someone may still read it
    assert model.flat().data is into and opt.flat.data is into
    np.testing.assert_array_equal(into, reference.flat.data)
    assert np.shares_memory(model.weight.data, into) and np.shares_memory(model.bias.data, into)
    x = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(model(x).data, x @ into[:6].reshape(3, 2) + into[6:])


def test_rebind_checks_the_vector():
    model = nets.Linear(3, 2)
    with pytest.raises(ValueError, match=r"cannot rebind data to a float64 vector of shape \(8,\)"):
        model.flat().rebind(data=np.zeros(8))
    with pytest.raises(ValueError, match=r"cannot rebind grad to a float32 vector of shape \(7,\)"):
        model.flat().rebind(grad=np.zeros(7, np.float32))
    grad = np.zeros(8, np.float32)
    model.flat().rebind(grad=grad)
    model(np.ones((1, 3), np.float32)).sum().backward()
    np.testing.assert_array_equal(grad[6:], 1)  # the bias's gradient landed in the new vector


# -- end to end --------------------------------------------------------------------------------
def test_mlp_overfits_32_samples_with_adam():
    nets.seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 10)).astype(np.float32)
    labels = rng.integers(0, 4, size=32)
    model = nets.Sequential(nets.Linear(10, 64), F.relu, nets.Linear(64, 4))
    opt = optim.Adam(model, lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        F.softmax_cross_entropy(model(x), labels).backward()
        opt.step()
    with nets.no_grad():
        accuracy = float((model(x).data.argmax(axis=1) == labels).mean())
    assert accuracy == 1.0
