"""workbench's engine against PyTorch CPU on the same nets, each library in a process of its own.

    python benchmarks/engine.py [--quick] [--threads N] [--torch-threads N|best] [--only TEXT]
    python benchmarks/engine.py --device gpu [--quick] [--only TEXT]

Cases: the A3C Atari net (conv 16x8x8/4, conv 32x4x4/2, dense 256, ReLU, policy head 7 and value
head 1 on 4x84x84 input) train step (forward, A3C loss, backward, RMSProp) at batch 1, 20 and 128,
its forward pass alone at batch 1, the MNIST MLP 784-800-10 train step (SGD) at batch 128, and
one SAC gradient step at batch 256 with HalfCheetah's sizes (17 observations, 6 actions: twin
critics, policy and temperature, each 256-256 ReLU MLPs, Adam, Polyak targets). The learners'
steps on the Nature net (conv 32x8x8/4, conv 64x4x4/2, conv 64x3x3/1, dense 512, ReLU; uint8
4x84x84 frames, 4 actions), workbench's side built by the agents' own code: PPO's Atari minibatch
of 256 (policy and value heads, the clipped loss with the pixels preset's clipped value and
entropy bonus, gradient norm clipped at 0.5, Adam) and DQN's gradient step on 32 (the pixels
preset's: the online net on s, the target net on s' without gradient, max_a target, Huber loss
on the chosen action, gradient norm clipped at 10, Adam lr 1e-4).
Recurrent cases come from engine_recurrent.py when it exists.

Each library is timed in a fresh process of its own (harness.run_case_in_processes), workbench
first, then PyTorch, each warmed up; every step is timed by the wall clock and by process CPU
time, and the table gives workbench / torch by minimum, by median and by CPU time. workbench
runs on every core (OpenBLAS and Numba alike) or `--threads N`; PyTorch by default at the faster
by median of 1 thread and as many as workbench (its threads spin while they wait, which can make
one thread its fastest on few cores), at N with `--threads N`, or as `--torch-threads` says.
`--device gpu` runs the GPU cases of engine_gpu.py against PyTorch CUDA instead, both in this
process, in alternating blocks.
"""
from __future__ import annotations

import argparse
import sys

from harness import threads_from_argv

if __name__ == "__main__":
    threads_from_argv()  # before NumPy loads OpenBLAS

import numba  # noqa: E402
import numpy as np  # noqa: E402

import nets  # noqa: E402
from nets import F, backend  # noqa: E402
from harness import (RATIO_LEGEND, Case, Measure, add_thread_options, format_table,  # noqa: E402
                     machine_line, run_case, run_case_in_processes, run_cases, torch_installed,
                     torch_module, torch_thread_counts)

ACTIONS = 7
RMSPROP = dict(lr=7e-4, alpha=0.99, eps=0.1)


def _data(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.random((batch, 4, 84, 84), dtype=np.float32)
    actions = rng.integers(0, ACTIONS, batch)
    returns = rng.standard_normal(batch).astype(np.float32)
    return frames, actions, returns


# -- workbench -------------------------------------------------------------------------------
class AtariNet(nets.Module):
    """Mnih et al. 2016 (A3C), after Mnih et al. 2013: two convs, one dense layer, two heads."""

    def __init__(self, actions: int = ACTIONS):
        super().__init__()
        self.conv1 = nets.Conv2D(4, 16, 8, stride=4, activation="relu")
        self.conv2 = nets.Conv2D(16, 32, 4, stride=2, activation="relu")
        self.fc = nets.Linear(32 * 9 * 9, 256)
        self.policy = nets.Linear(256, actions)
        self.value = nets.Linear(256, 1)

    def forward(self, x):
        h = self.conv2(self.conv1(x))
        h = F.relu(self.fc(F.flatten(h)))
        return self.policy(h), self.value(h)


def a3c_loss(logits, value, actions, returns, entropy_beta: float = 0.01):
    """Policy gradient with the value baseline, half the squared value error, entropy bonus."""
    log_probs = F.log_softmax(logits)
    value = F.reshape(value, (-1,))
    advantage = returns - value.data
    picked = log_probs[nets.backend.get_array_module(actions).arange(len(actions)), actions]
    policy_loss = -F.mean(picked * advantage)
    entropy = -F.mean(F.sum(F.exp(log_probs) * log_probs, axis=1))
    value_loss = F.mean((returns - value) ** 2)
    return policy_loss + 0.5 * value_loss - entropy_beta * entropy


def workbench_a3c_train(batch: int):
    def setup():
        nets.seed(0)
        model = AtariNet()
        optimizer = nets.optim.RMSProp(model, **RMSPROP)
        frames, actions, returns = _data(batch)

        def step():
            optimizer.zero_grad()
            logits, value = model(frames)
            a3c_loss(logits, value, actions, returns).backward()
            optimizer.step()
        return step
    return setup


def workbench_a3c_forward():
    nets.seed(0)
    model = AtariNet()
    frames = _data(1)[0]

    def step():
        with nets.no_grad():
            return model(frames)
    return step


def workbench_mlp_train():
    nets.seed(0)
    model = nets.Sequential(nets.Linear(784, 800), F.relu, nets.Linear(800, 10))
    optimizer = nets.optim.SGD(model, lr=0.01)
    rng = np.random.default_rng(0)
    images = rng.random((128, 784), dtype=np.float32)
    labels = rng.integers(0, 10, 128)

    def step():
        optimizer.zero_grad()
        F.softmax_cross_entropy(model(images), labels).backward()
        optimizer.step()
    return step


SAC_OBSERVATIONS, SAC_ACTIONS, SAC_BATCH = 17, 6, 256  # HalfCheetah-v5's


def _sac_sample(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {"obs": normal(SAC_BATCH, SAC_OBSERVATIONS), "next_obs": normal(SAC_BATCH, SAC_OBSERVATIONS),
            "actions": rng.uniform(-1, 1, (SAC_BATCH, SAC_ACTIONS)).astype(np.float32),
            "returns": normal(SAC_BATCH), "discounts": np.full(SAC_BATCH, 0.99, np.float32)}


def workbench_sac_step():
    import gymnasium as gym

    from agents import make_agent, make_config

    nets.seed(0)
    agent = make_agent("sac", gym.spaces.Box(-np.inf, np.inf, (SAC_OBSERVATIONS,), np.float32),
                       gym.spaces.Box(-1, 1, (SAC_ACTIONS,), np.float32), make_config("sac"))
    sample = _sac_sample()
    return lambda: agent.gradient_step(sample, None)


# -- PyTorch (imported only when a case runs) ----------------------------------------------------
def _torch_atari_net():
    torch = torch_module()
    nn = torch.nn

    class TorchAtariNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(4, 16, 8, stride=4)
            self.conv2 = nn.Conv2d(16, 32, 4, stride=2)
            self.fc = nn.Linear(32 * 9 * 9, 256)
            self.policy = nn.Linear(256, ACTIONS)
            self.value = nn.Linear(256, 1)

        def forward(self, x):
            h = torch.relu(self.conv1(x))
            h = torch.relu(self.conv2(h))
            h = torch.relu(self.fc(h.flatten(1)))
            return self.policy(h), self.value(h)

    torch.manual_seed(0)
    return TorchAtariNet()


def torch_a3c_train(batch: int):
    def setup():
        torch = torch_module()
        model = _torch_atari_net()
        optimizer = torch.optim.RMSprop(model.parameters(), **RMSPROP)
        frames, actions, returns = (torch.from_numpy(a) for a in _data(batch))
        rows = torch.arange(batch)

        def step():
            optimizer.zero_grad()
            logits, value = model(frames)
            log_probs = torch.log_softmax(logits, dim=1)
            value = value.reshape(-1)
            advantage = returns - value.detach()
            policy_loss = -(log_probs[rows, actions] * advantage).mean()
            entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
            value_loss = ((returns - value) ** 2).mean()
            (policy_loss + 0.5 * value_loss - 0.01 * entropy).backward()
            optimizer.step()
        return step
    return setup


def torch_a3c_forward():
    torch = torch_module()
    model = _torch_atari_net()
    frames = torch.from_numpy(_data(1)[0])

    def step():
        with torch.no_grad():
            return model(frames)
    return step


def torch_mlp_train():
    torch = torch_module()
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((128, 784), dtype=np.float32))
    labels = torch.from_numpy(rng.integers(0, 10, 128))

    def step():
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return step


def torch_sac_step():
    """stable-baselines3's SAC train step, written out: critics, then actor, then temperature,
    then the Polyak step, with CleanRL's squashed log std."""
    torch = torch_module()
    nn = torch.nn
    torch.manual_seed(0)
    mlp = lambda inputs, outputs: nn.Sequential(nn.Linear(inputs, 256), nn.ReLU(), nn.Linear(256, 256),  # noqa: E731
                                                nn.ReLU(), nn.Linear(256, outputs))
    policy = mlp(SAC_OBSERVATIONS, 2 * SAC_ACTIONS)
    critics = [mlp(SAC_OBSERVATIONS + SAC_ACTIONS, 1) for _ in range(2)]
    targets = [mlp(SAC_OBSERVATIONS + SAC_ACTIONS, 1) for _ in range(2)]
    log_alpha = torch.zeros(1, requires_grad=True)
    policy_optimizer = torch.optim.Adam(policy.parameters(), 3e-4)
    critic_optimizer = torch.optim.Adam([p for c in critics for p in c.parameters()], 3e-4)
    alpha_optimizer = torch.optim.Adam([log_alpha], 3e-4)
    s = {key: torch.from_numpy(value) for key, value in _sac_sample().items()}
    returns, discounts = s["returns"][:, None], s["discounts"][:, None]

    def sample(obs):
        mean, log_std = policy(obs).chunk(2, -1)
        log_std = -5 + 3.5 * (torch.tanh(log_std) + 1)
        u = mean + log_std.exp() * torch.randn_like(mean)
        action = torch.tanh(u)
        log_prob = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.9189385).sum(-1, keepdim=True)
        return action, log_prob - torch.log(1 - action ** 2 + 1e-6).sum(-1, keepdim=True)

    def step():
        alpha = log_alpha.exp().item()
        with torch.no_grad():
            next_action, next_log_prob = sample(s["next_obs"])
            x = torch.cat([s["next_obs"], next_action], 1)
            y = returns + discounts * (torch.min(targets[0](x), targets[1](x)) - alpha * next_log_prob)
        x = torch.cat([s["obs"], s["actions"]], 1)
        critic_loss = sum(((c(x) - y) ** 2).mean() for c in critics)
        critic_optimizer.zero_grad()
        critic_loss.backward()
        critic_optimizer.step()
        action, log_prob = sample(s["obs"])
        x = torch.cat([s["obs"], action], 1)
        actor_loss = (alpha * log_prob - torch.min(critics[0](x), critics[1](x))).mean()
        policy_optimizer.zero_grad()
        actor_loss.backward()
        policy_optimizer.step()
        alpha_loss = -(log_alpha * (log_prob.detach() - SAC_ACTIONS)).mean()
        alpha_optimizer.zero_grad()
        alpha_loss.backward()
        alpha_optimizer.step()
        with torch.no_grad():
            for critic, target in zip(critics, targets):
                for p, t in zip(critic.parameters(), target.parameters()):
                    t.mul_(0.995).add_(p, alpha=0.005)
    return step


# -- the learners on the Nature net: PPO's Atari minibatch and DQN's gradient step ---------------
NATURE_ACTIONS = 4  # Breakout's
PPO_MINIBATCH, DQN_BATCH = 256, 32  # PPO's pixels preset: 128 steps x 8 envs in 4 minibatches


def _atari_spaces():
    """(observations, actions) of an Atari env as the agents see it: 4 stacked uint8 frames."""
    import gymnasium as gym

    return gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(NATURE_ACTIONS)


def _ppo_config():
    """The agent's Atari settings (agents/ppo.py's pixels preset) on the Nature trunk."""
    from agents import make_config
    from agents.ppo import PRESETS

    return make_config("ppo", {**PRESETS["pixels"], "trunk": "nature"})


def _dqn_config():
    from agents import make_config
    from agents.dqn import PRESETS

    return make_config("dqn", PRESETS["pixels"])


def _ppo_minibatch(seed: int = 0) -> dict:
    """Frames, actions and what a rollout gives PPO; advantages normalised as the agent does."""
    rng = np.random.default_rng(seed)
    normal = lambda scale: (scale * rng.standard_normal(PPO_MINIBATCH)).astype(np.float32)  # noqa: E731
    advantages = normal(1.0)
    return {"obs": rng.integers(0, 256, (PPO_MINIBATCH, 4, 84, 84), dtype=np.uint8),
            "actions": rng.integers(0, NATURE_ACTIONS, PPO_MINIBATCH),
            "old_log_probs": np.log(np.float32(1 / NATURE_ACTIONS)) + normal(0.1),  # some ratios clip
            "advantages": (advantages - advantages.mean()) / (advantages.std() + 1e-8),
            "returns": normal(1.0), "old_values": normal(0.1)}


def _dqn_sample(seed: int = 0) -> dict:
    """A replay sample as agents/replay.py gives it (one-step returns, discount 0 after a terminal)."""
    rng = np.random.default_rng(seed)
    frames = lambda: rng.integers(0, 256, (DQN_BATCH, 4, 84, 84), dtype=np.uint8)  # noqa: E731
    return {"obs": frames(), "next_obs": frames(), "actions": rng.integers(0, NATURE_ACTIONS, DQN_BATCH),
            "returns": rng.choice(np.float32([-1, 0, 1]), DQN_BATCH),
            "discounts": np.where(rng.random(DQN_BATCH) < 0.05, 0, 0.99).astype(np.float32)}


def workbench_ppo_minibatch(device: str = "cpu"):
    """One pass of PPO.update's minibatch loop (`learn_from`): the agent's network, loss op and
    step, on `device` (the loss one CUDA graph there), the frames already there, as `update`
    gathers them, the rest in host memory."""
    from agents import make_agent

    nets.seed(0)
    config = _ppo_config()
    agent = make_agent("ppo", *_atari_spaces(), config, device=device)
    m = _ppo_minibatch()
    m["obs"] = backend.to_device(m["obs"], device)

    def step():
        agent.learn_from(m, config.clip_range, 0.0)  # gradient norm clipping, Adam
    return step


def workbench_dqn_step(device: str = "cpu"):
    """DQN's gradient step (`learn_from`) on a ready sample: the agent's networks, targets, loss
    op and step, the networks on `device` (the loss one CUDA graph there) and the sample in host
    memory, as the replay memory gives it."""
    from agents import make_agent

    nets.seed(0)
    agent = make_agent("dqn", *_atari_spaces(), _dqn_config(), device=device)
    sample = _dqn_sample()
    sample["weights"] = np.ones(DQN_BATCH, np.float32)  # uniform replay

    def step():
        agent.learn_from(sample, 0.0)  # gradient norm clipping, Adam, the target's refresh when due
    return step


def _torch_nature_net(*head_sizes: int):
    """The Nature trunk on uint8 frames (scaled to [0, 1] as the agents' trunk does), one linear
    head per size."""
    torch = torch_module()
    nn = torch.nn

    class TorchNatureNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(
                nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU())
            self.heads = nn.ModuleList(nn.Linear(512, size) for size in head_sizes)

        def forward(self, frames):
            features = self.trunk(frames.float() / 255)
            return [head(features) for head in self.heads]

    torch.manual_seed(0)
    return TorchNatureNet()


def torch_ppo_minibatch(device: str = "cpu"):
    """CleanRL's ppo_atari.py minibatch step with the same settings, on `device` (its minibatch
    there, as CleanRL keeps its rollout)."""
    torch = torch_module()
    config = _ppo_config()
    model = _torch_nature_net(NATURE_ACTIONS, 1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    m = {key: torch.from_numpy(value).to(device) for key, value in _ppo_minibatch().items()}
    clip, value_clip = config.clip_range, config.value_clip

    def step():
        logits, values = model(m["obs"])
        log_probs = torch.log_softmax(logits, dim=1)
        ratio = (log_probs.gather(1, m["actions"][:, None])[:, 0] - m["old_log_probs"]).exp()
        advantages = m["advantages"]
        policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)).mean()
        entropy = -(log_probs.exp() * log_probs).sum(dim=1).mean()
        values, old_values, returns = values[:, 0], m["old_values"], m["returns"]
        clipped_values = old_values + (values - old_values).clamp(-value_clip, value_clip)
        value_loss = 0.5 * torch.max((values - returns) ** 2, (clipped_values - returns) ** 2).mean()
        loss = policy_loss - config.entropy_beta * entropy + config.value_coef * value_loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
    return step


def torch_dqn_step(device: str = "cpu"):
    """CleanRL's dqn_atari.py gradient step with the agent's settings (its Huber loss, gradient
    clipping and target refresh), the networks on `device` ("cuda": each sample copied there
    from host memory, as CleanRL's replay buffer does)."""
    torch = torch_module()
    config = _dqn_config()
    model, target = (_torch_nature_net(NATURE_ACTIONS).to(device) for _ in range(2))
    target.load_state_dict(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    host = {key: torch.from_numpy(value) for key, value in _dqn_sample().items()}
    steps = [0]

    def step():
        s = {key: value.to(device) for key, value in host.items()}  # on the CPU the same tensors
        with torch.no_grad():
            targets = s["returns"] + s["discounts"] * target(s["next_obs"])[0].max(dim=1).values
        q = model(s["obs"])[0].gather(1, s["actions"][:, None])[:, 0]
        loss = torch.nn.functional.huber_loss(q, targets, delta=config.huber_delta)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        steps[0] += 1
        if steps[0] % config.target_update_interval == 0:
            target.load_state_dict(model.state_dict())
    return step


CASES = [
    Case("a3c atari train b=1", workbench_a3c_train(1), torch_a3c_train(1), repeats=100),
    Case("a3c atari train b=20", workbench_a3c_train(20), torch_a3c_train(20), repeats=60),
    Case("a3c atari train b=128", workbench_a3c_train(128), torch_a3c_train(128), repeats=30),
    Case("a3c atari forward b=1", workbench_a3c_forward, torch_a3c_forward, repeats=300),
    Case("mnist mlp train b=128", workbench_mlp_train, torch_mlp_train, repeats=100),
    Case("sac step b=256 (halfcheetah)", workbench_sac_step, torch_sac_step, repeats=60),
    Case("ppo atari minibatch b=256 (nature)", workbench_ppo_minibatch, torch_ppo_minibatch, repeats=20),
    Case("dqn step b=32 (nature, online+target)", workbench_dqn_step, torch_dqn_step, repeats=60),
]

try:  # recurrent cases live beside this file once they are written
    from engine_recurrent import CASES as RECURRENT_CASES
except ImportError as error:
    if error.name != "engine_recurrent":
        raise  # the file exists but is broken: say so instead of hiding it
    RECURRENT_CASES = []


def run(quick: bool = False, full: bool = False, smoke: bool = False) -> list[Measure]:
    """Every case, each library in its own process, for `python -m benchmarks engine` (`full`
    lifts the time cap per case)."""
    return run_cases(CASES + RECURRENT_CASES, quick, smoke, full, in_processes=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the repeats (a smoke run)")
    parser.add_argument("--only", metavar="TEXT", help="run only cases whose name contains TEXT")
    add_thread_options(parser)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: workbench on CuPy against PyTorch CUDA (engine_gpu.py), in one process")
    args = parser.parse_args(argv)
    threads = numba.get_num_threads()
    if args.device == "gpu":
        import engine_gpu
        try:
            nets.backend.check_device("gpu")
        except ValueError as error:
            parser.error(str(error))
        print(machine_line(threads))
        print(engine_gpu.device_line())
        all_cases = engine_gpu.cases()
        time_case = lambda case: run_case(case, args.quick, torch_installed())  # noqa: E731
    else:
        torch_threads = torch_thread_counts(args, threads)
        print(machine_line(threads, torch_threads))
        all_cases = CASES + RECURRENT_CASES
        time_case = lambda case: run_case_in_processes(case, args.quick, threads, torch_threads)  # noqa: E731
    results = []
    for case in (c for c in all_cases if not args.only or args.only in c.name):
        results.append(time_case(case))
        print(f"  done: {case.name}", file=sys.stderr, flush=True)
    print(format_table(results))
    print(RATIO_LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
