"""PPO: proximal policy optimization with the clipped surrogate objective (Schulman et al. 2017,
"Proximal Policy Optimization Algorithms"), synchronous as stable-baselines3 and CleanRL run it,
or asynchronous as Sample Factory's APPO does.

Synchronous (the default): every actor collects `t_max` steps in each of its envs with the same
weights, the learner waits for a rollout from every actor (`ready`), then takes `epochs` passes
over the joined batch in shuffled minibatches and publishes: on-policy, as the peers. Asynchronous
(`asynchronous`): the learner learns from whatever rollouts have arrived while the actors go on
with the newest weights it publishes; the ratio is always taken against the log-probabilities of
the policy that acted, which every rollout carries, and `vtrace` swaps GAE for V-trace's targets
(Espeholt et al. 2018), which correct for that lag. Its several passes over the data need the
rollouts in the learner: gradients are computed there.

The network is A3C's (agents/a3c.py), with separate policy and value MLPs for vector observations
(CleanRL's and stable-baselines3's for PPO) and A3C's shared conv trunk for images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import nets
from nets import Function, backend, optim
from nets.settings import Settings, setting

from .a3c import A3C
from .losses import LOG_2PI, _log_softmax, action_log_probs, gaussian_log_prob
from .networks import TRUNK_RULE
from .returns import lambda_returns, next_state_values, vtrace


@dataclass
class PPOConfig(Settings):
    """PPO hyperparameters: stable-baselines3's PPO defaults (CleanRL's ppo_continuous_action.py
    has the same), which work beyond the env they were tuned on: Adam lr 3e-4 (eps 1e-5), 2048
    env steps per update (2 actors x 2 envs x t_max 512), gamma 0.99, GAE lambda 0.95, 10 epochs
    of 32 minibatches (64 steps each), advantages normalised per minibatch, clip range 0.2, no
    value clipping, no entropy bonus, value coefficient 0.5, gradient norm clipped at 0.5, no
    target KL; the loss is a mean over the minibatch. On CartPole-v1 they reached a last-100
    return of 500 by 100k steps (seeds 0 and 1, inline), where CleanRL's ppo.py defaults (lr
    2.5e-4 annealed, 512 steps per update, 4 epochs of 4 minibatches, entropy 0.01, value
    clipping) were at 315. `clip_anneal` anneals the clip range to 0 over the run, `lr_anneal` the
    learning rate (RL Zoo's lin_ schedules); `target_kl` stops an update's epochs once a minibatch's
    approximate KL exceeds it (SB3's and CleanRL's option); `value_clip` clips the value's change as
    the ratio's (CleanRL's clip_vloss).

    The value term is value_coef / 2 (V - R)^2, as A3C's and CleanRL's; SB3's vf_coef multiplies
    (V - R)^2, so on vector observations with Discrete actions (PRESETS) value_coef is 1, SB3's weight:
    the value's larger share of the gradient norm clipped at 0.5 makes the policy's steps smaller,
    and LunarLander-v3 (300k steps) ended at a median of 91 over seeds 0-9 (-118 to 163) where with
    0.5 it peaked at 100-130 and fell back to 48 (-97 to 111; SB3 PPO 114 over seeds 0-4, 52 to 200,
    in the same runs); CartPole-v1, Acrobot-v1 the same either way (seeds 0-2). One-hot observations
    keep 0.5 (with 1: FrozenLake-v1 0.58 against 0.70, CliffWalking-v1's loop on 3 of 3 seeds
    against 1), as do Box actions (Pendulum-v1 -170 against -176, MountainCarContinuous-v0 alike)
    and images (CleanRL's Atari weight).

    On Atari (PRESETS): CleanRL's ppo_atari.py and RL Zoo's Atari PPO: lr 2.5e-4 annealed,
    rollouts of 128 steps in 8 envs (2 actors x 4), 4 epochs of 4 minibatches, clip range 0.1
    annealed and the value clipped by as much, entropy bonus 0.01, the A3C paper's conv net
    shared by policy and value. More actors make an update's batch, and with `minibatches` fixed
    its minibatches, larger: with 15 actors x 4 envs, `minibatches=30` keeps CleanRL's 256
    (docs/performance.md, PPO on Pong by env step). With Box actions: normalised observations and rewards, a
    state-independent log std starting at 0; two envs per actor, as for vectors, batch the actors'
    forward passes (Pendulum-v1 to -250 in 8.1-8.6 s, from 9.4-10.2 s with 1 env x 1024). On
    MuJoCo the learning rate is annealed to 0 over the run, as CleanRL's ppo_continuous_action.py
    (benchmarked on MuJoCo) does: at a constant 3e-4 a HalfCheetah run of 11M steps peaked at 5
    minutes and fell to 1,147 by 30, annealed over 20M it climbed to 2,330. Not on every Box env:
    Pendulum-v1 in 100k steps annealed over them ended at -585 to -814, at a constant rate at -184
    to -228 (seeds 0-2).
    """

    lr: float = setting(3e-4, ">= 0")
    gamma: float = setting(0.99, "in [0, 1]")
    gae_lambda: float = setting(0.95, "in [0, 1]")
    t_max: int = setting(512, ">= 1")
    epochs: int = setting(10, ">= 1")
    minibatches: int = setting(32, ">= 1")
    clip_range: float = setting(0.2, "> 0")
    value_clip: float | None = setting(None, "> 0")  # None: the plain squared error
    normalize_advantage: bool = True
    entropy_beta: float = setting(0.0, ">= 0")
    value_coef: float = setting(0.5, ">= 0")
    max_grad_norm: float = setting(0.5, "> 0")
    target_kl: float | None = setting(None, "> 0")
    lr_anneal: bool = False
    clip_anneal: bool = False
    adam_eps: float = setting(1e-5, "> 0")
    asynchronous: bool = False
    vtrace: bool = False  # asynchronous: V-trace targets and advantages instead of GAE's
    trunk: str = setting("auto", TRUNK_RULE)  # conv net for images, MLPs of `hidden` for vectors
    hidden: tuple[int, ...] = setting((64, 64), ">= 1")
    log_std_init: float = 0.0  # Gaussian policies: the log std every action dimension starts at
    normalize_obs: bool | None = None  # None: for Box actions and vector observations
    normalize_reward: bool | None = None  # None: for Box actions


PRESETS = {
    "vector": {"value_coef": 1.0},
    "one-hot": {"value_coef": 0.5},
    "pixels": {"lr": 2.5e-4, "lr_anneal": True, "t_max": 128, "epochs": 4, "minibatches": 4,
               "clip_range": 0.1, "clip_anneal": True, "value_clip": 0.1, "entropy_beta": 0.01},
    "mujoco": {"lr_anneal": True},
}


class ClippedSurrogateLoss(Function):
    """PPO's loss on a minibatch of N steps, a mean over them:

        -min(r A, clip(r, 1 - eps, 1 + eps) A) - beta H + value_coef / 2 max((V - R)^2, (V_c - R)^2)

    r = exp(log pi(a|s) - log mu(a|s)) against the behaviour policy mu's log-probabilities,
    V_c = V_old + clip(V - V_old, -c, c) with c = `value_clip` (None: the plain squared error).
    Inputs: the policy (logits (N, A), or a Gaussian's mean (N, A) and log std (A,)) and values
    (N, 1). After forward, `stats` holds each term's mean, the approximate KL (CleanRL's
    (r - 1) - log r) and the fraction of clipped ratios.
    """

    def __init__(self, actions, old_log_probs, advantages, returns, old_values, clip_range,
                 value_clip: float | None, entropy_beta: float, value_coef: float):
        self.actions, self.old_log_probs, self.advantages = actions, old_log_probs, advantages
        self.returns, self.old_values = returns, old_values
        self.clip_range, self.value_clip = clip_range, value_clip
        self.beta, self.value_coef = entropy_beta, value_coef

    def forward(self, *inputs):
        *policy, values = inputs
        xp = backend.get_array_module(values)
        dtype, n = values.dtype, len(self.returns)
        cast = lambda a: xp.asarray(a, dtype=dtype)  # noqa: E731 - float32 in training, float64 in checks
        self.shapes, self.dtype = [p.shape for p in policy] + [values.shape], dtype
        log_probs, entropy = (self._categorical if len(policy) == 1 else self._gaussian)(xp, *policy)
        advantages = cast(self.advantages)
        log_ratio = log_probs - cast(self.old_log_probs)
        ratio = xp.exp(log_ratio)
        eps = cast(self.clip_range)  # a number, or an array: it anneals, and a CUDA graph reads arrays
        unclipped, clipped = ratio * advantages, xp.clip(ratio, 1 - eps, 1 + eps) * advantages
        # d/dr of -min(r A, clip(r) A): -A where the unclipped term is the smaller, else 0
        self.g_log_probs = -advantages * ratio * (unclipped <= clipped) / n
        v, returns = values.reshape(n), cast(self.returns)
        error = v - returns
        squared = error * error
        if self.value_clip is None:
            self.g_values = error
        else:
            old = cast(self.old_values)
            inside = xp.abs(v - old) < self.value_clip
            clipped_error = old + xp.clip(v - old, -self.value_clip, self.value_clip) - returns
            larger = clipped_error * clipped_error > squared
            squared = xp.maximum(squared, clipped_error * clipped_error)
            self.g_values = xp.where(larger, clipped_error * inside, error)
        self.g_values = self.g_values * dtype.type(self.value_coef / n)
        policy_loss = -xp.minimum(unclipped, clipped).mean()
        value_loss = dtype.type(0.5) * squared.mean()
        self.stats = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy.mean(),
                      "approx_kl": ((ratio - 1) - log_ratio).mean(),
                      "clipfrac": (xp.abs(ratio - 1) > eps).mean()}
        return xp.asarray(policy_loss - dtype.type(self.beta) * entropy.mean()
                          + dtype.type(self.value_coef) * value_loss, dtype=dtype)

    def _categorical(self, xp, logits):
        logp = _log_softmax(xp, logits)
        p = xp.exp(logp)
        entropy = -(p * logp).sum(axis=1)
        self.actions = xp.asarray(self.actions)
        self.logp, self.p, self.entropy = logp, p, entropy
        return logp[xp.arange(len(logits)), self.actions], entropy

    def _gaussian(self, xp, mean, log_std):
        n, dtype = len(mean), mean.dtype
        actions = xp.asarray(self.actions, dtype=dtype).reshape(n, -1)
        self.inv_std = xp.exp(-log_std)
        self.z = (actions - mean) * self.inv_std
        half_log_2pi = dtype.type(0.5 * LOG_2PI)
        log_probs = -(dtype.type(0.5) * self.z * self.z + log_std + half_log_2pi).sum(axis=1)
        entropy = xp.broadcast_to((log_std + dtype.type(0.5) + half_log_2pi).sum(), (n,))
        return log_probs, entropy

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        n, g_logp = len(self.returns), self.g_log_probs * gy
        g_entropy = -self.dtype.type(self.beta / n) * gy
        if len(self.shapes) == 2:  # logits: d log p_a / dz = onehot - p, dH/dz = -p (log p + H)
            grads = [-self.p * (g_logp[:, None] + g_entropy * (self.logp + self.entropy[:, None]))]
            grads[0][xp.arange(n), self.actions] += g_logp
        else:  # d log pi / d mean = z / std, d log pi / d log std = z^2 - 1, dH / d log std = 1
            g_mean = g_logp[:, None] * self.z * self.inv_std
            g_log_std = (g_logp[:, None] * (self.z * self.z - 1)).sum(axis=0) + n * g_entropy
            grads = [g_mean, g_log_std.reshape(self.shapes[1])]
        grads.append((self.g_values * gy).reshape(self.shapes[-1]))
        return tuple(g.astype(self.dtype, copy=False) for g in grads)


class PPO(A3C):
    name = "ppo"
    summary = ("proximal policy optimization, Schulman et al. 2017: synchronous, or asynchronous "
               "as Sample Factory's APPO with --set asynchronous=true")
    Config = PPOConfig
    gradients_on = ("learner",)  # several passes over the rollouts: only the learner holds them all
    presets = PRESETS
    envs_per_actor = {"vector": 2, "pixels": 4, "box": 2}  # see PPOConfig

    def __init__(self, observation_space, action_space, config: PPOConfig, learner: bool = True,
                 device: str = "cpu"):
        super().__init__(observation_space, action_space, config, learner, device)
        self._minibatch_gradients = nets.CapturedGradients(self.network, self._minibatch_loss)

    def make_optimizer(self):
        return optim.Adam(self.network, lr=self.config.lr, eps=self.config.adam_eps)

    def ready(self, rollouts, n_actors):
        """Synchronous PPO learns once every actor has sent its rollout, all acted with the same
        weights (each actor waits for the weights that learned from its last rollout)."""
        return self.config.asynchronous or len(rollouts) >= n_actors

    def update(self, batch, progress, into=None):
        c = self.config
        T, E = batch.rewards.shape
        n = T * E
        # the states and the cut states they bootstrap from, copied to the network's device once:
        # each minibatch is then gathered there
        states = backend.to_device(self._states(batch), self.device)
        obs, actions = states[:n], self._actions(batch)
        behaviour = batch.log_probs.reshape(n)
        with nets.no_grad():
            policy, values = self.network(states)
        v = backend.to_host(values.data).reshape(-1)
        rollout_values, following = v[:n].reshape(T, E), next_state_values(v[:n].reshape(T, E), batch.final_index, v[n:])
        rewards = batch.rewards if self.normalizer is None else self.normalizer.scale_rewards(batch.rewards)
        if c.vtrace:
            log_rhos = self.log_probs(policy, actions, n).reshape(T, E) - batch.log_probs
            returns, advantages = vtrace(rewards, batch.terminated, batch.truncated, rollout_values, following,
                                         log_rhos, c.gamma, lam=c.gae_lambda)
        else:
            returns = lambda_returns(rewards, batch.terminated, batch.truncated, rollout_values, following,
                                     c.gamma, c.gae_lambda)
            advantages = returns - rollout_values
        returns, advantages, old_values = returns.reshape(n), advantages.reshape(n), rollout_values.reshape(n)
        anneal = max(0.0, 1.0 - progress)
        clip_range = c.clip_range * (anneal if c.clip_anneal else 1.0)
        rng = nets.rng.generator()
        totals, count = {}, 0
        for _ in range(c.epochs):
            for rows in np.array_split(rng.permutation(n), min(c.minibatches, n)):  # each step once
                minibatch_advantages = advantages[rows]
                if c.normalize_advantage and len(rows) > 1:
                    minibatch_advantages = (minibatch_advantages - minibatch_advantages.mean()) / (
                        minibatch_advantages.std() + 1e-8)
                minibatch = {"obs": obs[backend.to_device(rows, self.device)], "actions": actions[rows],
                             "old_log_probs": behaviour[rows], "advantages": minibatch_advantages,
                             "returns": returns[rows], "old_values": old_values[rows]}
                stats = self.learn_from(minibatch, clip_range, progress, into)
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
            if c.target_kl is not None and stats["approx_kl"] > c.target_kl:
                break
        if batch.moments:
            self.merge_moments(batch.moments)
        means = {key: value / count for key, value in totals.items()}
        variance = float(np.var(returns))
        means["explained_variance"] = float("nan") if variance == 0 else 1.0 - float(np.var(returns - old_values)) / variance
        means["clip_range"] = clip_range
        return means

    def learn_from(self, minibatch: dict, clip_range: float, progress: float, into=None) -> dict[str, float]:
        """One gradient step on a minibatch (`update`'s dict of arrays, advantages normalised)."""
        _, *values = self._minibatch_gradients(
            minibatch["obs"], minibatch["actions"], minibatch["old_log_probs"], minibatch["advantages"],
            minibatch["returns"], minibatch["old_values"], np.array([clip_range], np.float32))
        stats = dict(zip(self._stat_names, map(float, values)))
        # the first step writes the new weights into `into` (Agent.step); the rest step them there
        stats.update(self.step(progress, None if self.network.flat().data is into else into))
        return stats

    def _minibatch_loss(self, obs, actions, old_log_probs, advantages, returns, old_values, clip_range):
        """The clipped loss of a minibatch (arrays on the network's device) and its statistics:
        no host reads, so that on the GPU it is one CUDA graph (`_minibatch_gradients`)."""
        c = self.config
        op = ClippedSurrogateLoss(actions, old_log_probs, advantages, returns, old_values, clip_range,
                                  c.value_clip, c.entropy_beta, c.value_coef)
        policy, values = self.network(obs)
        loss = op(*(policy if isinstance(policy, tuple) else (policy,)), values)
        self._stat_names = tuple(op.stats)  # read when a replay returns the values alone
        xp = backend.get_array_module(values.data)
        return (loss, *(xp.asarray(value) for value in op.stats.values()))

    def log_probs(self, policy, actions, n):
        """log pi(a|s) on the host of the batch's first n rows under the learner's `policy`."""
        if self.continuous:
            mean, log_std = (backend.to_host(t.data) for t in policy)
            return gaussian_log_prob(mean[:n], log_std, actions.reshape(n, -1))
        return action_log_probs(policy.data[:n], actions)
