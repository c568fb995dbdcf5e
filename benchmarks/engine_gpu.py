"""GPU cases of benchmarks/engine.py (`--device gpu`): workbench on CuPy against PyTorch CUDA
(eager mode), both with their data already on the GPU.

Cases: the A3C Atari net train step (engine.py's net and loss, RMSProp) at batch 20 and 128, the
MNIST LeNet of `workbench recipe mnist-cnn` (dropout off on both sides) at batch 256 with SGD, the
MLP 784-800-10 at batch 128 with SGD, and a char-level LSTM language-model step (one-hot
vocabulary 65, hidden 512, batch 64, 100 steps, Adam; PyTorch runs cuDNN's LSTM), and DQN's
gradient step on the Nature net (engine.py's: online and target nets, batch 32 copied from host
memory as a replay memory gives it, Adam, clipping; issue 35's target 1.5 ms), and PPO's minibatch
step on it (engine.py's: batch 256, the frames on the GPU, as PPO.update gathers them there; its
loss replayed as one CUDA graph, as DQN's). Every step ends
with a device synchronisation, so a step's wall time is its time on the GPU plus whatever launch
overhead the GPU waited on; small nets are bound by that overhead.

The cases marked "graph" are the same steps with the gradient computation (zeroing, forward,
loss, backward) replayed as one CUDA graph (nets.CapturedGradients) and the optimizer step after
it, against the same eager PyTorch step. A graph that could not be captured falls back to eager
calls with a RuntimeWarning in the log, and its figure is then the eager one.
"""
from __future__ import annotations

import numpy as np

import nets
from nets import F, backend
from harness import Case, torch_module

VOCAB, HIDDEN, BATCH, TIME = 65, 512, 64, 100


def _gpu_sync():
    cp = backend.cupy_module()
    return cp.cuda.get_current_stream().synchronize


def _synced(step, sync):
    def run():
        step()
        sync()
    return run


def _torch_cuda():
    torch = torch_module()
    return torch if torch is not None and torch.cuda.is_available() else None


# -- workbench on the GPU -----------------------------------------------------------------------
def _train_step(model, optimizer, loss_fn, inputs, graph: bool):
    """Gradients of loss_fn(*inputs), then the optimizer's step; the gradients replayed as one CUDA
    graph with `graph`."""
    gradients = nets.CapturedGradients(model, loss_fn, capture=graph)
    while graph and not gradients.replaying and gradients.eager_reason is None:
        gradients(*inputs)  # warm-up, capture and checks, none of them timed

    def step():
        gradients(*inputs)
        optimizer.step()
    return _synced(step, _gpu_sync())


def workbench_a3c(batch: int, graph: bool = False):
    def setup():
        from engine import RMSPROP, AtariNet, _data, a3c_loss
        nets.seed(0)
        model = AtariNet().to("gpu")

        def loss(frames, actions, returns):
            return a3c_loss(*model(frames), actions, returns)
        data = [backend.to_device(a, "gpu") for a in _data(batch)]
        return _train_step(model, nets.optim.RMSProp(model, **RMSPROP), loss, data, graph)
    return setup


def _classifier_step(model, optimizer, x, y, graph):
    return _train_step(model, optimizer, lambda x, y: F.softmax_cross_entropy(model(x), y), (x, y), graph)


def _mnist_batch(batch: int, images: bool):
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28) if images else (batch, 784), dtype=np.float32)
    return x, rng.integers(0, 10, batch)


def workbench_cnn(graph: bool = False):
    from workbench.recipes.mnist import LeNet
    nets.seed(0)
    model = LeNet(dropout=0.0).to("gpu")
    x, y = (backend.to_device(a, "gpu") for a in _mnist_batch(256, images=True))
    return _classifier_step(model, nets.optim.SGD(model, lr=0.01), x, y, graph)


def workbench_mlp(graph: bool = False):
    nets.seed(0)
    model = nets.Sequential(nets.Linear(784, 800), F.relu, nets.Linear(800, 10)).to("gpu")
    x, y = (backend.to_device(a, "gpu") for a in _mnist_batch(128, images=False))
    return _classifier_step(model, nets.optim.SGD(model, lr=0.01), x, y, graph)


def _char_data():
    rng = np.random.default_rng(0)
    chars = rng.integers(0, VOCAB, (BATCH, TIME + 1))
    return np.eye(VOCAB, dtype=np.float32)[chars[:, :-1]], chars[:, 1:]


class CharLSTM(nets.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nets.LSTM(VOCAB, HIDDEN)
        self.head = nets.Linear(HIDDEN, VOCAB)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def workbench_char_lstm(graph: bool = False):
    nets.seed(0)
    model = CharLSTM().to("gpu")
    x, y = (backend.to_device(a, "gpu") for a in _char_data())
    return _classifier_step(model, nets.optim.Adam(model, lr=2e-3), x, y, graph)


def workbench_dqn():
    from engine import workbench_dqn_step
    step = workbench_dqn_step("gpu")
    for _ in range(1 + 1 + nets.capture.CHECKED_REPLAYS):  # its loss's warm-up, capture and checks
        step()
    return _synced(step, _gpu_sync())


def workbench_ppo():
    from engine import workbench_ppo_minibatch
    step = workbench_ppo_minibatch("gpu")
    for _ in range(1 + 1 + nets.capture.CHECKED_REPLAYS):  # its loss's warm-up, capture and checks
        step()
    return _synced(step, _gpu_sync())


# -- PyTorch CUDA ---------------------------------------------------------------------------------
def torch_a3c(batch: int):
    def setup():
        from engine import RMSPROP, _data, _torch_atari_net
        torch = _torch_cuda()
        model = _torch_atari_net().cuda()
        optimizer = torch.optim.RMSprop(model.parameters(), **RMSPROP)
        frames, actions, returns = (torch.from_numpy(a).cuda() for a in _data(batch))
        rows = torch.arange(batch, device="cuda")

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
        return _synced(step, torch.cuda.synchronize)
    return setup


def _torch_classifier_step(torch, model, x, y, optimizer):
    def step():
        optimizer.zero_grad()
        out = model(x)
        torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
        optimizer.step()
    return _synced(step, torch.cuda.synchronize)


def torch_cnn():
    torch = _torch_cuda()
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                          nn.Linear(500, 10)).cuda()
    x, y = (torch.from_numpy(a).cuda() for a in _mnist_batch(256, images=True))
    return _torch_classifier_step(torch, model, x, y, torch.optim.SGD(model.parameters(), lr=0.01))


def torch_mlp():
    torch = _torch_cuda()
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 10)).cuda()
    x, y = (torch.from_numpy(a).cuda() for a in _mnist_batch(128, images=False))
    return _torch_classifier_step(torch, model, x, y, torch.optim.SGD(model.parameters(), lr=0.01))


def torch_char_lstm():
    torch = _torch_cuda()
    nn = torch.nn
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(VOCAB, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, VOCAB)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    model = Model().cuda()
    x, y = (torch.from_numpy(a).cuda() for a in _char_data())
    return _torch_classifier_step(torch, model, x, y, torch.optim.Adam(model.parameters(), lr=2e-3))


def torch_ppo():
    from engine import torch_ppo_minibatch
    return _synced(torch_ppo_minibatch("cuda"), _torch_cuda().cuda.synchronize)


def torch_dqn():
    from engine import torch_dqn_step
    return _synced(torch_dqn_step("cuda"), _torch_cuda().cuda.synchronize)


def cases() -> list[Case]:
    """The GPU cases; the PyTorch side only where PyTorch sees a CUDA device."""
    peer = _torch_cuda() is not None
    return [
        Case("a3c atari train b=20", workbench_a3c(20), torch_a3c(20) if peer else None, repeats=200),
        Case("a3c atari train b=128", workbench_a3c(128), torch_a3c(128) if peer else None, repeats=200),
        Case("mnist cnn train b=256", workbench_cnn, torch_cnn if peer else None, repeats=200),
        Case("mnist mlp train b=128", workbench_mlp, torch_mlp if peer else None, repeats=200),
        Case(f"char-lstm train h={HIDDEN} b={BATCH} t={TIME}", workbench_char_lstm,
             torch_char_lstm if peer else None, repeats=40),
        Case("dqn step b=32 (nature, online+target)", workbench_dqn, torch_dqn if peer else None,
             repeats=200),
        Case("ppo atari minibatch b=256 (nature)", workbench_ppo, torch_ppo if peer else None, repeats=100),
        Case("graph: a3c atari train b=20", workbench_a3c(20, graph=True), torch_a3c(20) if peer else None,
             repeats=200),
        Case("graph: a3c atari train b=128", workbench_a3c(128, graph=True), torch_a3c(128) if peer else None,
             repeats=200),
        Case("graph: mnist cnn train b=256", lambda: workbench_cnn(graph=True), torch_cnn if peer else None,
             repeats=200),
        Case("graph: mnist mlp train b=128", lambda: workbench_mlp(graph=True), torch_mlp if peer else None,
             repeats=200),
        Case(f"graph: char-lstm train h={HIDDEN} b={BATCH} t={TIME}", lambda: workbench_char_lstm(graph=True),
             torch_char_lstm if peer else None, repeats=40),
    ]


def device_line() -> str:
    cp = backend.cupy_module()
    props = cp.cuda.runtime.getDeviceProperties(0)
    torch = _torch_cuda()
    return (f"GPU {props['name'].decode()}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, "
            f"cupy {cp.__version__}" + (f", torch {torch.__version__} CUDA" if torch else
                                        ", torch CUDA not available"))
