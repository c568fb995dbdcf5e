"""GAN: each player's loss falls when only that player trains, the optimizers update only their
own player, label smoothing and feature matching behave as defined, and the image helpers."""
import io

import numpy as np
import pytest

import nets
from logs.images import png, tile
from nets.gan import GAN, GANOptimizers
from nets.gradcheck import gradcheck, to_float64


def tiny_real(n=16, size=8, seed=0):
    """Bright squares on a dark background in [-1, 1]: easy to tell from a fresh generator."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 1, size, size), -1.0, np.float32)
    for i in range(n):
        r, c = rng.integers(0, size - 3, 2)
        x[i, 0, r:r + 3, c:c + 3] = 1
    return x


def adam_pair(gan, lr=2e-3):
    return GANOptimizers(gan, lambda flat, player: nets.optim.Adam(flat, lr, beta1=0.5))


@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_discriminator_loss_falls_while_it_alone_trains(arch):
    nets.seed(0)
    gan = GAN(noise=8, size=8, width=4, arch=arch, samples=4)
    optimizers = adam_pair(gan)
    real = tiny_real()
    z = gan.sample_noise(16)
    generator_before = gan.generator.state_dict()
    losses = []
    for _ in range(15):
        with nets.no_grad():
            fake = gan.generator(z).data
        loss, d_real, d_fake = gan.discriminator_loss(real, fake)
        optimizers.step_discriminator(loss)
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert d_real > 0.5 > d_fake
    for name, value in gan.generator.state_dict().items():  # the generator did not move
        if not name.startswith(("bn", "bn0", "bn1")):
            np.testing.assert_array_equal(value, generator_before[name], err_msg=name)


@pytest.mark.parametrize("feature_matching", [False, True])
def test_generator_loss_falls_while_it_alone_trains(feature_matching):
    nets.seed(1)
    gan = GAN(noise=8, size=8, width=4, samples=4)
    optimizers = adam_pair(gan)
    real = tiny_real()
    for _ in range(10):  # a discriminator with an opinion
        with nets.no_grad():
            fake = gan.generator(gan.sample_noise(16)).data
        optimizers.step_discriminator(gan.discriminator_loss(real, fake)[0])
    discriminator_before = gan.discriminator.state_dict()
    z = gan.sample_noise(16)
    losses = []
    for _ in range(10):
        optimizers.zero_grad()
        loss = gan.generator_loss(z, real, feature_matching)
        loss.backward()
        optimizers.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    for name, value in gan.discriminator.state_dict().items():
        if "running" not in name:  # batch-norm statistics follow what the discriminator sees
            np.testing.assert_array_equal(value, discriminator_before[name], err_msg=name)


def test_label_smoothing_and_the_non_saturating_loss_are_as_defined():
    nets.seed(2)
    gan = GAN(noise=4, size=8, width=2, arch="mlp", samples=2)
    real, fake = tiny_real(4), tiny_real(4, seed=1)
    logits_real = gan.discriminator(real).data
    logits_fake = gan.discriminator(fake).data

    def bce(x, t):
        p = 1 / (1 + np.exp(-x))
        return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()

    loss, d_real, d_fake = gan.discriminator_loss(real, fake, smoothing=0.1)
    assert loss.item() == pytest.approx(0.5 * (bce(logits_real, 0.9) + bce(logits_fake, 0.0)), rel=1e-5)
    assert d_real == pytest.approx((1 / (1 + np.exp(-logits_real))).mean(), rel=1e-5)
    z = gan.sample_noise(4)
    with nets.no_grad():
        logits_generated = gan.discriminator(gan.generator(z)).data
    assert gan.generator_loss(z).item() == pytest.approx(np.log1p(np.exp(-logits_generated)).mean(), rel=1e-5)
    with pytest.raises(ValueError, match=r"label smoothing must be in \[0, 0.5\)"):
        gan.discriminator_loss(real, fake, smoothing=0.5)


def test_players_check_their_gradients(rng):
    gan = to_float64(GAN(noise=3, size=8, width=2, samples=2))
    z = nets.Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    gradcheck(lambda: gan.generator(z), [z, *gan.generator.parameters()], atol=1e-5)
    x = nets.Tensor(rng.standard_normal((3, 1, 8, 8)), requires_grad=True)
    gradcheck(lambda: gan.discriminator(x), [x, *gan.discriminator.parameters()], atol=1e-5)


def test_optimizers_round_trip_and_scale_rates_together():
    nets.seed(3)
    gan = GAN(noise=4, size=8, width=2, samples=2)
    optimizers = adam_pair(gan, lr=1e-3)
    optimizers.discriminator.lr = 4e-3
    real = tiny_real(4)
    optimizers.step_discriminator(gan.discriminator_loss(real, gan.generate(4))[0])
    state = optimizers.state_dict()
    assert {k.split("/")[0] for k in state} == {"generator", "discriminator"}
    other = adam_pair(GAN(noise=4, size=8, width=2, samples=2), lr=5e-4)
    other.load_state_dict(state)
    assert (other.lr, other.discriminator.lr, other.discriminator.steps) == (1e-3, 4e-3, 1)
    other.lr = 5e-4  # a schedule halves both rates
    assert other.discriminator.lr == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="names no GAN player"):
        other.load_state_dict({"critic/m": np.zeros(1)})


def test_tiles_and_png_images_decode():
    from PIL import Image  # a dev dependency; the encoder itself needs none

    images = np.random.default_rng(0).random((5, 3, 4))
    grid = tile(images, columns=3)
    assert grid.shape == (2 * 4 - 1, 3 * 5 - 1)
    np.testing.assert_array_equal(grid[:3, :4], images[0])
    decoded = np.asarray(Image.open(io.BytesIO(png(grid)))) / 255
    np.testing.assert_allclose(decoded, grid, atol=0.5 / 255 + 1e-9)
    stretched = tile(np.array([[[2.0, 4.0]]]), scale_each=True)
    np.testing.assert_array_equal(stretched, [[0.0, 1.0]])
