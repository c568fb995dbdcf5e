"""RBM and DBN: the CD gradient against its textbook form, monitors that fall while training on
small binary data (CD-k and PCD), persistent chains, and a DBN whose pre-trained layers become
a trainable network."""
import numpy as np
import pytest

import nets
from nets import F
from nets.energy import DBN, RBM, bernoulli
from nets.gradcheck import gradcheck, to_float64


def binary_data(n=200, bits=16, prototypes=4, noise=0.05, seed=0):
    """Noisy copies of a few random binary prototypes: structure an RBM can capture."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((prototypes, bits)) < 0.5).astype(np.float32)
    data = protos[rng.integers(0, prototypes, n)]
    return np.abs(data - (rng.random(data.shape) < noise)).astype(np.float32)


def test_free_energy_matches_its_definition_and_checks_gradients(rng):
    rbm = to_float64(RBM(5, 3))
    rbm.visible_bias.data[:] = rng.standard_normal(5)
    rbm.hidden_bias.data[:] = rng.standard_normal(3)
    v = nets.Tensor(rng.random((4, 5)), requires_grad=True)
    w, b, c = rbm.weight.data, rbm.visible_bias.data, rbm.hidden_bias.data
    expected = -v.data @ b - np.log1p(np.exp(v.data @ w + c)).sum(axis=1)
    np.testing.assert_allclose(rbm.free_energy(v).data, expected, rtol=1e-12)
    gradcheck(lambda: rbm.free_energy(v), [v, *rbm.parameters()])
    # summing exp(-E) over all hidden states gives exp(-F): the free energy marginalises h
    hs = np.array([[(i >> j) & 1 for j in range(3)] for i in range(8)], dtype=np.float64)
    energies = -(v.data @ b)[:, None] - hs @ c - np.einsum("nv,vh,kh->nk", v.data, w, hs)
    np.testing.assert_allclose(-np.log(np.exp(-energies).sum(axis=1)), expected, rtol=1e-10)


def test_cd_gradient_is_the_difference_of_data_and_model_statistics(rng):
    rbm = to_float64(RBM(6, 4))
    v = (rng.random((5, 6)) < 0.5).astype(np.float64)
    nets.seed(7)
    rbm.cd_loss(v, k=2).backward()
    nets.seed(7)
    negative, _ = rbm.gibbs(v, 2)  # the same draws
    positive_stats = v.T @ rbm.hidden_probs(v) / len(v)
    negative_stats = negative.T @ rbm.hidden_probs(negative) / len(negative)
    np.testing.assert_allclose(-rbm.weight.grad, positive_stats - negative_stats, atol=1e-12)
    np.testing.assert_allclose(-rbm.visible_bias.grad, v.mean(0) - negative.mean(0), atol=1e-12)
    np.testing.assert_allclose(-rbm.hidden_bias.grad,
                               rbm.hidden_probs(v).mean(0) - rbm.hidden_probs(negative).mean(0), atol=1e-12)


@pytest.mark.parametrize("persistent", [False, True])
def test_training_lowers_reconstruction_error_and_raises_pseudo_likelihood(persistent):
    data = binary_data()
    nets.seed(0)
    rbm = RBM(16, 8, chains=20)
    optimizer = nets.optim.SGD(rbm, 0.1, momentum=0.5)
    batches = np.random.default_rng(1)
    error0 = rbm.reconstruction_error(data)
    likelihood0 = rbm.pseudo_likelihood(data, np.random.default_rng(2))
    particles0 = rbm.particles.copy()
    for _ in range(100):
        optimizer.zero_grad()
        rbm.cd_loss(data[batches.integers(0, len(data), 20)], k=1, persistent=persistent).backward()
        optimizer.step()
    assert rbm.reconstruction_error(data) < 0.5 * error0
    assert rbm.pseudo_likelihood(data, np.random.default_rng(2)) > likelihood0 + 5
    assert (rbm.particles != particles0).any() == persistent  # only PCD moves the chains
    # the trained model prefers data to noise
    noise = (np.random.default_rng(3).random(data.shape) < 0.5).astype(np.float32)
    assert rbm.free_energy(data).data.mean() < rbm.free_energy(noise).data.mean()


def test_rbm_errors_name_the_problem():
    rbm = RBM(4, 2)
    with pytest.raises(ValueError, match="needs chains"):
        rbm.cd_loss(np.zeros((2, 4), np.float32), persistent=True)
    with pytest.raises(ValueError, match=r"expects \(batch, 4\)"):
        rbm.cd_loss(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="k must be >= 1"):
        rbm.cd_loss(np.zeros((2, 4), np.float32), k=0)


def test_bernoulli_frequencies_and_reproducibility():
    p = np.full((200, 50), 0.3, np.float32)
    nets.seed(4)
    a = bernoulli(p)
    nets.seed(4)
    np.testing.assert_array_equal(a, bernoulli(p))
    assert a.mean() == pytest.approx(0.3, abs=0.01) and set(np.unique(a)) == {0.0, 1.0}


def test_dbn_forward_is_the_mlp_of_its_rbms_and_fine_tunes(rng):
    dbn = to_float64(DBN([5, 4, 3], classes=2))
    x = nets.Tensor(rng.random((6, 5)), requires_grad=True)
    gradcheck(lambda: dbn(x), [x, *dbn.parameters()])
    top = dbn.propagate(x.data, 2)
    np.testing.assert_allclose(dbn(x).data, dbn.classifier(top).data, rtol=1e-12)
    # fine-tuning moves the RBM weights the pre-training set
    data = binary_data(n=60, bits=5, prototypes=2, seed=1)
    labels = (data.sum(axis=1) > 2).astype(np.int64)
    dbn32 = DBN([5, 6], classes=2)
    before = dbn32.rbm1.weight.data.copy()
    optimizer = nets.optim.SGD(dbn32, 0.5)
    losses = []
    for _ in range(80):
        optimizer.zero_grad()
        loss = F.softmax_cross_entropy(dbn32(data), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0] and not np.array_equal(before, dbn32.rbm1.weight.data)
