"""A replay memory for the learner: a fixed-capacity ring of single env steps, sampled uniformly or
in proportion to priorities (Schaul et al. 2016, "Prioritized Experience Replay").

Storage. Each slot holds one state's newest frame (for stacked Atari frames (4, 84, 84) only the
last 84x84 frame, so a 1M-step memory holds 1M frames, not 4M or 8M), the action taken in it, the
reward, and links to the previous and next slot of the same env's stream. Steps of many actors'
envs arrive interleaved, a rollout at a time; each env is one stream, keyed by (actor, env).
Stacked observations are rebuilt from the links: a state `k` steps into its episode stacks the
frames of the `min(k, stack - 1)` states before it, padded with the episode's first frame, as
Gymnasium's FrameStackObservation does after a reset.

Successors. A step's n-step return walks the `next` links: it stops at a terminal step (no
bootstrap), at an episode truncated by its time limit (the state it was cut at is kept as a
*final* slot, which is never sampled as a start), or after n steps. A step becomes sampleable
once everything its return needs has arrived; the newest steps of each stream wait for their
successors (a rollout's last state is the next rollout's first, so it is stored once).

Eviction. Overwriting the oldest slot also retires the newer steps whose frame stack reached back
into it: nothing sampled ever mixes frames of two lives of a slot.

Prioritized sampling draws slot i with probability p_i^alpha / sum_k p_k^alpha from a sum tree
(stratified: one draw in each of `batch` equal slices of the total, as in the paper), and weighs
it by w_i = (N P(i))^-beta, normalised by the batch's largest weight (they only scale updates
down). New steps get the priority their actor sent (Ape-X) or the largest priority seen so far.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

TERMINAL, FINAL, VALID, BROKEN = 1, 2, 4, 8  # slot flags


# -- sum tree ---------------------------------------------------------------------------------
@njit(cache=True)
def _tree_set(tree, leaves, index, value):
    """tree: 2 * leaves sums, root at 1, leaf i at leaves + i."""
    node = leaves + index
    tree[node] = value
    node //= 2
    while node >= 1:
        tree[node] = tree[2 * node] + tree[2 * node + 1]
        node //= 2


@njit(cache=True)
def _tree_set_many(tree, leaves, indices, values):
    for k in range(len(indices)):
        _tree_set(tree, leaves, indices[k], values[k])


@njit(cache=True)
def _tree_find(tree, leaves, targets, out):
    """For each target mass u in [0, total), the leaf where the running sum passes u."""
    for k in range(len(targets)):
        u, node = targets[k], 1
        while node < leaves:
            left = tree[2 * node]
            if u < left or tree[2 * node + 1] <= 0.0:  # rounding may leave u past the last mass
                node = 2 * node
            else:
                u -= left
                node = 2 * node + 1
        out[k] = node - leaves


@njit(cache=True)
def _tree_rebuild(tree, leaves, raw, flags, alpha):
    """Every leaf from the raw priorities (after alpha changed), then every sum."""
    tree[:] = 0.0
    for i in range(len(raw)):
        if flags[i] & VALID:
            tree[leaves + i] = raw[i] ** alpha
    for node in range(leaves - 1, 0, -1):
        tree[node] = tree[2 * node] + tree[2 * node + 1]


# -- writing ----------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _copy_row(src, dst):
    """Rows of machine words: an explicit loop (a row assignment runs at half the speed)."""
    for k in range(len(src)):
        dst[k] = src[k]


@njit(cache=True)
def _validate(slot, flags, raw, tree, leaves, alpha, max_priority, prioritized):
    """Make `slot` sampleable; returns 1 if it was not already."""
    if flags[slot] & (VALID | BROKEN | FINAL):
        return 0
    flags[slot] |= VALID
    if prioritized:
        if raw[slot] < 0:  # no priority sent with it: the largest so far (Schaul et al. 2016)
            raw[slot] = max_priority
        _tree_set(tree, leaves, slot, raw[slot] ** alpha)
    return 1


@njit(cache=True)
def _invalidate(slot, flags, tree, leaves, prioritized):
    if flags[slot] & VALID:
        flags[slot] &= ~VALID
        if prioritized:
            _tree_set(tree, leaves, slot, 0.0)
        return 1
    return 0


@njit(cache=True)
def _append(frames, actions, rewards, flags, epstep, prev, next_, stamps, raw, tree, leaves,
            in_frames, in_final, in_actions, in_rewards, in_terminal, in_priority,
            state, n, stack, alpha, max_priority, prioritized):
    """Write one stream's slots in order. `state` (int64): head, size, clock, n_valid, then the
    stream's last slot (-1: an episode starts) and its step in the episode; updated in place."""
    capacity = len(flags)
    head, size, clock, n_valid, last, ep = state[0], state[1], state[2], state[3], state[4], state[5]
    for j in range(len(in_final)):
        s = head
        if size == capacity:  # evict the oldest slot
            n_valid -= _invalidate(s, flags, tree, leaves, prioritized)
            y, h = next_[s], 1
            if y >= 0:
                prev[y] = -1  # its successor loses the link back
            while y >= 0 and h < stack:  # and every successor whose stack reached this frame
                if epstep[y] >= h:
                    flags[y] |= BROKEN
                    n_valid -= _invalidate(y, flags, tree, leaves, prioritized)
                y, h = next_[y], h + 1
        if s == last:  # a stalled stream's own newest slot was the oldest: its link is gone
            last = -1
        _copy_row(in_frames[j], frames[s])
        actions[s] = in_actions[j]
        rewards[s] = in_rewards[j]
        final = in_final[j]
        flags[s] = (FINAL if final else 0) | (TERMINAL if in_terminal[j] else 0)
        if prioritized:
            raw[s] = in_priority[j]
        epstep[s] = ep
        prev[s] = last
        next_[s] = -1
        if last >= 0:
            next_[last] = s
        p = s
        for _ in range(min(ep, stack - 1)):  # a stack that reaches past a lost link is unusable
            p = prev[p]
            if p < 0:
                flags[s] |= BROKEN
                break
        stamps[s] = clock
        clock += 1
        head = (head + 1) % capacity
        size = min(size + 1, capacity)
        if not final:  # the step n back now has its bootstrap state: this one
            p, h = s, 0
            while h < n and p >= 0:
                p, h = prev[p], h + 1
            if p >= 0:
                n_valid += _validate(p, flags, raw, tree, leaves, alpha, max_priority, prioritized)
        if final or in_terminal[j]:  # the last n steps' returns end here
            p = s if in_terminal[j] else last
            for _ in range(n):
                if p < 0:
                    break
                n_valid += _validate(p, flags, raw, tree, leaves, alpha, max_priority, prioritized)
                p = prev[p]
            last, ep = -1, 0
        else:
            last, ep = s, ep + 1
    state[0], state[1], state[2], state[3], state[4], state[5] = head, size, clock, n_valid, last, ep


# -- reading ----------------------------------------------------------------------------------
@njit(cache=True)
def _stack_into(frames, prev, epstep, slot, stack, out):
    """out (stack, frame): the frames of `slot`'s stacked state, oldest first."""
    back = min(epstep[slot], stack - 1)
    p = slot
    for k in range(stack - 1, -1, -1):
        _copy_row(frames[p], out[k])
        if stack - 1 - k < back:
            p = prev[p]


@njit(cache=True)
def _gather(frames, actions, rewards, flags, epstep, prev, next_, indices, n, gamma, stack,
            obs, next_obs, out_actions, returns, discounts):
    """Batch arrays for sampled slots: stacked states, actions, n-step returns and the discount
    gamma^m of each bootstrap state (0 after a terminal step)."""
    for b in range(len(indices)):
        i = indices[b]
        _stack_into(frames, prev, epstep, i, stack, obs[b])
        out_actions[b] = actions[i]
        total, scale, j = 0.0, 1.0, i
        boot = -1
        for k in range(n):
            total += scale * rewards[j]
            scale *= gamma
            if flags[j] & TERMINAL:
                break
            following = next_[j]
            if k == n - 1 or flags[following] & FINAL:
                boot = following
                break
            j = following
        returns[b] = total
        if boot >= 0:
            discounts[b] = scale
            _stack_into(frames, prev, epstep, boot, stack, next_obs[b])
        else:
            discounts[b] = 0.0
            _stack_into(frames, prev, epstep, i, stack, next_obs[b])  # any state: it weighs 0


class Stream:
    """One env's place in the memory: its newest slot and the state a cut step was cut at."""

    __slots__ = ("last", "stamp", "ep", "pending")

    def __init__(self):
        self.last, self.stamp, self.ep, self.pending = -1, -1, 0, None


class ReplayMemory:
    """`capacity` steps of observations shaped `observation_shape`. With `stack` > 1 the
    observations are frame stacks (stack, ...) with the newest frame last, stored a frame at a
    time. `n_step` and `gamma` define the returns `sample` gives. Actions are integers, or float32
    vectors of `action_size` (continuous actions)."""

    def __init__(self, capacity: int, observation_shape: tuple[int, ...], dtype=np.float32, *,
                 stack: int = 1, n_step: int = 1, gamma: float = 0.99, prioritized: bool = False,
                 alpha: float = 0.6, priority_eps: float = 1e-6, rng: np.random.Generator | None = None,
                 action_size: int | None = None):
        if capacity < 1 or n_step < 1 or stack < 1:
            raise ValueError(f"capacity, n_step and stack must be >= 1, got {capacity}, {n_step}, {stack}")
        if stack > 1 and observation_shape[0] != stack:
            raise ValueError(f"stacked observations need {stack} frames first, got shape {observation_shape}")
        self.capacity, self.stack, self.n_step, self.gamma = capacity, stack, n_step, float(gamma)
        self.observation_shape = tuple(observation_shape)
        self.frame_shape = self.observation_shape[1:] if stack > 1 else self.observation_shape
        self.dtype = np.dtype(dtype)
        self.action_shape = () if action_size is None else (action_size,)
        self.action_dtype = np.dtype(np.int32 if action_size is None else np.float32)
        self.prioritized, self.alpha, self.priority_eps = prioritized, float(alpha), float(priority_eps)
        self.leaves = 1 << max(0, (capacity - 1).bit_length()) if prioritized else 1
        layout = self.layout(capacity, observation_shape, dtype, stack=stack, prioritized=prioritized,
                             action_size=action_size)
        for name, (shape, array_dtype, fill) in layout.items():
            setattr(self, name, np.full(shape, fill, array_dtype) if fill else np.zeros(shape, array_dtype))
        self.arrays = tuple(layout)
        row = self.frames.shape[1] * self.dtype.itemsize  # kernels copy frames a word at a time
        self.word = next(np.dtype(f"u{size}") for size in (8, 4, 2, 1) if row % size == 0)
        self.max_priority = 1.0
        self.state = np.array([0, 0, 0, 0, -1, 0], np.int64)  # head, size, clock, n_valid, last, ep
        self.streams: dict = {}
        self.rng = rng if rng is not None else np.random.default_rng()

    @staticmethod
    def layout(capacity: int, observation_shape: tuple[int, ...], dtype=np.float32, *, stack: int = 1,
               prioritized: bool = False, action_size: int | None = None, **_) -> dict:
        """name -> (shape, dtype, fill) of every array a memory of these settings holds: what
        __init__ allocates and `bytes_needed` adds up (other keywords, as __init__'s, ignored)."""
        frame_shape = tuple(observation_shape)[1:] if stack > 1 else tuple(observation_shape)
        leaves = 1 << max(0, (capacity - 1).bit_length()) if prioritized else 1
        return {
            "frames": ((capacity, math.prod(frame_shape)), np.dtype(dtype), 0),
            "actions": ((capacity,) + (() if action_size is None else (action_size,)),
                        np.int32 if action_size is None else np.float32, 0),
            "rewards": (capacity, np.float32, 0),
            "flags": (capacity, np.uint8, 0),
            "epstep": (capacity, np.int32, 0),
            "prev": (capacity, np.int64, -1),
            "next": (capacity, np.int64, -1),
            "stamps": (capacity, np.int64, -1),
            "tree": (2 * leaves, np.float64, 0),
            "raw": (capacity if prioritized else 1, np.float32, 0),  # priorities before ^alpha
        }

    @classmethod
    def bytes_needed(cls, capacity: int, observation_shape: tuple[int, ...], dtype=np.float32, **options) -> int:
        """Bytes a memory of these settings (ReplayMemory's arguments) allocates: checked against
        the machine's memory before a run starts."""
        return sum(math.prod(np.atleast_1d(shape)) * np.dtype(array_dtype).itemsize
                   for shape, array_dtype, _ in cls.layout(capacity, observation_shape, dtype, **options).values())

    # -- size ------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Slots written (at most `capacity`)."""
        return int(self.state[1])

    def __len__(self) -> int:
        """Steps that can be sampled now."""
        return int(self.state[3])

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.arrays)

    def describe(self) -> str:
        shape = "x".join(map(str, self.frame_shape))
        stored = f"one {shape} frame a step, stacks of {self.stack} rebuilt from the links" \
            if self.stack > 1 else f"one observation of shape ({shape},) a step"
        size = f"{self.nbytes / 2**30:.2f} GiB" if self.nbytes >= 2**30 else f"{self.nbytes / 2**20:.1f} MiB"
        return (f"replay memory: {self.capacity:,} steps, {size} reserved "
                f"({self.nbytes / self.capacity:,.0f} bytes a step: {stored}"
                f"{'; prioritized' if self.prioritized else ''})")

    # -- adding ----------------------------------------------------------------------------
    def add(self, key, obs, actions, rewards, terminated, truncated, final_obs=None,
            priorities=None) -> None:
        """One env's T consecutive steps: obs (T, *shape), actions, rewards, terminated and
        truncated (T,) as in a Rollout column (the last step is always cut or terminated);
        `final_obs` maps each cut step t to the state it was cut at; `priorities` (T,) or None.
        A cut last step waits: if the stream's next call starts from the state it was cut at,
        the episode goes on; otherwise that state is stored as the episode's final one."""
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = Stream()
        obs = np.asarray(obs)
        T = len(obs)
        final_obs = final_obs or {}
        alive = stream.last >= 0 and self.stamps[stream.last] == stream.stamp
        goes_on = stream.pending is not None and np.array_equal(stream.pending, obs[0])
        lead = []  # the state a truncated episode ended in, stored before this call's steps
        if goes_on and not alive:  # overwritten while the stream stalled: the episode goes on
            stream.last = -1         # without a link back (stacks reaching past it are unusable)
        elif not goes_on and alive:
            lead = [stream.pending]
        elif not goes_on:  # a new stream, an episode that terminated, or a lost one
            stream.last, stream.ep = -1, 0
        cuts = [t for t in range(T - 1) if truncated[t] and not terminated[t]]
        # slot order: [lead], then the steps with each mid-rollout cut's final state after it
        order = np.arange(T) + np.searchsorted(cuts, np.arange(T), side="left") + len(lead)
        S = T + len(cuts) + len(lead)
        is_final = np.ones(S, np.bool_)
        is_final[order] = False
        newest = (lambda x: np.asarray(x)[..., -1, :, :]) if self.stack > 1 else np.asarray
        frames = np.empty((S, *self.frame_shape), self.dtype)
        frames[order] = newest(obs)
        if lead or cuts:
            frames[np.flatnonzero(is_final)] = [newest(x) for x in lead + [final_obs[t] for t in cuts]]
        step_actions = np.zeros((S, *self.action_shape), self.action_dtype)
        step_actions[order] = actions
        step_rewards = np.zeros(S, np.float32)
        step_rewards[order] = rewards
        step_terminal = np.zeros(S, np.bool_)
        step_terminal[order] = terminated
        step_priority = np.full(S, -1, np.float32)
        if priorities is not None:
            step_priority[order] = np.abs(np.asarray(priorities, np.float32)) + self.priority_eps
        self.state[4], self.state[5] = stream.last, stream.ep
        _append(self.frames.view(self.word), self.actions, self.rewards, self.flags, self.epstep, self.prev,
                self.next, self.stamps, self.raw, self.tree, self.leaves,
                frames.reshape(S, -1).view(self.word),
                is_final, step_actions, step_rewards, step_terminal, step_priority, self.state,
                self.n_step, self.stack, self.alpha, self.max_priority, self.prioritized)
        stream.last, stream.ep = int(self.state[4]), int(self.state[5])
        stream.stamp = int(self.stamps[stream.last]) if stream.last >= 0 else -1
        last_cut = truncated[T - 1] and not terminated[T - 1]
        stream.pending = np.array(final_obs[T - 1], self.dtype) if last_cut else None

    # -- sampling --------------------------------------------------------------------------
    def sample_indices(self, batch: int, beta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(slot indices, importance weights) of `batch` sampleable steps: uniform (weights 1),
        or in proportion to priority^alpha, weighted (N P(i))^-beta / max over the batch."""
        if len(self) == 0:
            raise ValueError("the replay memory has no complete step to sample yet")
        if not self.prioritized:
            indices = self.rng.integers(0, self.size, batch)
            while True:  # the few slots waiting for successors (or retired) are drawn again
                bad = np.flatnonzero((self.flags[indices] & VALID) == 0)
                if not len(bad):
                    return indices, np.ones(batch, np.float32)
                indices[bad] = self.rng.integers(0, self.size, len(bad))
        total = self.tree[1]
        targets = (np.arange(batch) + self.rng.random(batch)) * (total / batch)
        indices = np.empty(batch, np.int64)
        _tree_find(self.tree, self.leaves, targets, indices)
        probabilities = self.tree[self.leaves + indices] / total
        weights = (len(self) * probabilities) ** -beta
        return indices, (weights / weights.max()).astype(np.float32)

    def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """obs, actions, returns (n-step), discounts (gamma^m, 0 after a terminal step) and
        next_obs (the bootstrap states) of the slots `indices`."""
        B = len(indices)
        out_shape = (B, self.stack, self.frames.shape[1])
        obs = np.empty(out_shape, self.dtype)
        next_obs = np.empty(out_shape, self.dtype)
        actions = np.empty((B, *self.action_shape), np.int64 if self.action_shape == () else np.float32)
        returns = np.empty(B, np.float32)
        discounts = np.empty(B, np.float32)
        _gather(self.frames.view(self.word), self.actions, self.rewards, self.flags, self.epstep,
                self.prev, self.next, np.asarray(indices, np.int64), self.n_step,
                np.float32(self.gamma), self.stack, obs.view(self.word), next_obs.view(self.word),
                actions, returns, discounts)
        shape = (B, *self.observation_shape)
        return {"obs": obs.reshape(shape), "actions": actions, "returns": returns,
                "discounts": discounts, "next_obs": next_obs.reshape(shape)}

    def sample(self, batch: int, beta: float = 1.0) -> dict[str, np.ndarray]:
        """`gather` of `sample_indices`, plus `indices` and `weights`."""
        indices, weights = self.sample_indices(batch, beta)
        return {**self.gather(indices), "indices": indices, "weights": weights}

    # -- priorities ------------------------------------------------------------------------
    def update_priorities(self, indices: np.ndarray, errors: np.ndarray) -> None:
        """New priorities |error| + eps for sampled slots (those retired since are left out)."""
        indices = np.asarray(indices, np.int64)
        keep = (self.flags[indices] & VALID) != 0
        indices = indices[keep]
        priorities = np.abs(np.asarray(errors, np.float32)[keep]) + np.float32(self.priority_eps)
        if not len(indices):
            return
        self.raw[indices] = priorities
        self.max_priority = max(self.max_priority, float(priorities.max()))
        _tree_set_many(self.tree, self.leaves, indices, priorities.astype(np.float64) ** self.alpha)

    def set_alpha(self, alpha: float) -> None:
        """A new priority exponent: every leaf is recomputed (O(capacity))."""
        if alpha != self.alpha:
            self.alpha = float(alpha)
            _tree_rebuild(self.tree, self.leaves, self.raw, self.flags, self.alpha)


def store(memory: ReplayMemory, rollouts: list) -> None:
    """Every env's column of every rollout, one stream per (actor, env), with the states its cut
    steps were cut at and the actor's priorities (Ape-X) where it sent them."""
    for r in rollouts:
        finals: dict[int, dict[int, np.ndarray]] = {}
        for (t, e), state in zip(r.final_index.tolist(), r.final_obs):
            finals.setdefault(e, {})[t] = state
        for e in range(r.rewards.shape[1]):
            memory.add((r.actor, e), r.obs[:, e], r.actions[:, e], r.rewards[:, e], r.terminated[:, e],
                       r.truncated[:, e], finals.get(e), None if r.priorities is None else r.priorities[:, e])


class ReplayRatio:
    """`gradient_steps` gradient steps every `train_frequency` env steps, however the env steps
    arrive: what a batch of new steps earns, the fraction left over carried to the next."""

    def __init__(self, gradient_steps: int, train_frequency: int):
        self.rate, self.owed = gradient_steps / train_frequency, 0.0

    def take(self, env_steps: int) -> int:
        self.owed += env_steps * self.rate
        count = int(self.owed)
        self.owed -= count
        return count


def waiting_note(learning_starts: int, batch_size: int) -> str:
    """What `after_load` says of an agent that learns from a replay memory."""
    return (f"the replay memory is not kept in checkpoints: it starts empty, and learning resumes once "
            f"it holds {max(learning_starts, batch_size):,} steps")
