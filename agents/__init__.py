"""RL algorithms written against nets and a Gymnasium env, with no knowledge of processes.

Each agent is one file holding one Agent class with its rules (agents/base.py says which); adding
one is that file plus a line in AGENTS.
"""
from __future__ import annotations

import dataclasses

from nets import settings

from .a3c import A3C, A3CConfig
from .a3c_lstm import A3CLSTM, A3CLSTMConfig
from .base import FAMILIES, Agent, Policy
from .dqn import DQN, DQNConfig
from .impala import Impala, ImpalaConfig
from .nstep_q import NStepQ, NStepQConfig, OneStepQ, OneStepQConfig
from .ppo import PPO, PPOConfig
from .reinforce import Reinforce, ReinforceConfig
from .sac import SAC, SACConfig
from .rollout import Batch, Gradient, Rollout, join

# The registry, in the order --help lists them; the first is the default agent.
AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (
    A3C,
    A3CLSTM,
    Impala,
    NStepQ,
    OneStepQ,
    Reinforce,
    DQN,
    PPO,
    SAC,
)}
DEFAULT_AGENT = next(iter(AGENTS))


def agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")
    return AGENTS[name]


def make_config(name: str, overrides: dict | None = None):
    """The agent's config dataclass: its defaults, then `overrides` (unknown keys, wrong types and
    values out of range fail in one line)."""
    return settings.from_dict(agent_class(name).Config, overrides or {}, name)


def make_agent(name: str, observation_space, action_space, config=None, learner: bool = True,
               device: str = "cpu") -> Agent:
    cls = agent_class(name)
    return cls(observation_space, action_space, config or cls.Config(), learner, device)


def config_dict(config) -> dict:
    return dataclasses.asdict(config)


__all__ = ["AGENTS", "A3C", "A3CConfig", "A3CLSTM", "A3CLSTMConfig", "Agent", "Batch", "DEFAULT_AGENT", "DQN",
           "DQNConfig", "FAMILIES", "Gradient", "Impala", "ImpalaConfig", "NStepQ", "NStepQConfig", "OneStepQ",
           "OneStepQConfig", "PPO", "PPOConfig", "Policy", "Reinforce", "ReinforceConfig", "Rollout", "SAC", "SACConfig", "agent_class", "config_dict",
           "join", "make_agent", "make_config"]
