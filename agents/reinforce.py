"""REINFORCE with a learned baseline (Williams 1992; Sutton & Barto 2018, section 13.4)."""
from __future__ import annotations

from dataclasses import dataclass

from nets import optim

from .a3c import A3C


@dataclass
class ReinforceConfig:
    """REINFORCE with baseline: whole-episode Monte Carlo returns G_t, the policy-gradient term
    -log pi(a|s) (G_t - b(s)) and a state-value baseline b trained on (G_t - b(s))^2 (Sutton &
    Barto, 13.4). A time-limit truncation bootstraps from the baseline's value of the final
    state. Adam at lr 1e-2 and gamma 0.99 follow PyTorch's examples/reinforcement_learning; no
    entropy bonus, no annealing, as in the textbook algorithm.
    """

    lr: float = 1e-2
    gamma: float = 0.99
    entropy_beta: float = 0.0
    value_coef: float = 1.0
    max_grad_norm: float = 40.0
    lr_anneal: bool = False
    trunk: str = "auto"  # conv net for images, MLP of `hidden` for vectors
    hidden: tuple[int, ...] = (64, 64)


class Reinforce(A3C):
    """A3C's network, policy and loss on whole episodes (no bootstrapping inside an episode)."""

    name = "reinforce"
    Config = ReinforceConfig

    @property
    def rollout_length(self):
        return None

    def make_optimizer(self):
        return optim.Adam(self.network, lr=self.config.lr)
