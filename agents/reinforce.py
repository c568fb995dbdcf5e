"""REINFORCE with a learned baseline (Williams 1992; Sutton & Barto 2018, section 13.4)."""
from __future__ import annotations

from dataclasses import dataclass

from nets import optim
from nets.settings import Settings, setting

from .a3c import A3C, PRESETS
from .networks import TRUNK_RULE


@dataclass
class ReinforceConfig(Settings):
    """REINFORCE with baseline: whole-episode Monte Carlo returns G_t, the policy-gradient term
    -log pi(a|s) (G_t - b(s)) and a state-value baseline b trained on (G_t - b(s))^2 (Sutton &
    Barto, 13.4). A time-limit truncation bootstraps from the baseline's value of the final
    state. Adam and gamma 0.99 as in PyTorch's examples/reinforcement_learning; no entropy
    bonus, no annealing, as in the textbook algorithm.

    lr 5e-3, between PyTorch's example (1e-2) and PFRL's (1e-3, on batches of 10 episodes): one
    Adam step on a whole episode at 1e-2 can halve the policy's entropy, and an episode learned
    one update after it was played (an actor process plays while another's episode is learned
    from) then collapsed CartPole to a one-action policy, which never recovers, on 2 of 6 seeds;
    at 5e-3 none of 6 did even two updates behind, and 6 of 6 passed a last-100 return of 195
    within 125k steps with 2 actor processes (3e-3 and 1e-3 learned too slowly; an entropy
    bonus of 0.01 did not prevent the collapse at 1e-2).

    On Atari lr 1e-4; with Box actions lr 1e-3 and the log std starting at -0.5 (A3C's), and
    Pendulum-v1's gamma 0.9 (RL Zoo's).
    """

    lr: float = setting(5e-3, ">= 0")
    gamma: float = setting(0.99, "in [0, 1]")
    entropy_beta: float = setting(0.0, ">= 0")
    value_coef: float = setting(1.0, ">= 0")
    max_grad_norm: float = setting(40.0, "> 0")
    lr_anneal: bool = False
    trunk: str = setting("auto", TRUNK_RULE)  # conv net for images, MLP of `hidden` for vectors
    hidden: tuple[int, ...] = setting((64, 64), ">= 1")
    gae_lambda: float | None = setting(None, "in [0, 1]")  # None: Monte Carlo returns (the textbook's)
    log_std_init: float = 0.0  # Gaussian policies (Box actions): see A3CConfig
    normalize_obs: bool | None = None
    normalize_reward: bool | None = None


class Reinforce(A3C):
    """A3C's network, policy and loss on whole episodes (no bootstrapping inside an episode)."""

    name = "reinforce"
    summary = "REINFORCE with a learned baseline, from whole episodes of one env per actor"
    Config = ReinforceConfig
    whole_episodes = True
    graphs_its_loss = False  # a batch shape for each episode length
    presets = {"pixels": {"lr": 1e-4}, "box": {"lr": 1e-3, "log_std_init": -0.5},
               "Pendulum-v1": PRESETS["Pendulum-v1"]}

    def make_optimizer(self):
        return optim.Adam(self.network, lr=self.config.lr)
