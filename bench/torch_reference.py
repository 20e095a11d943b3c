"""PyTorch reference for the project's two next-frame predictors (fully connected LSTM and
ConvLSTM), trained exactly as the Rust harness trains them.

Install (CPU use is enough; the plain PyPI wheel works even though it pulls CUDA libraries):

    python3 -m venv .venv && .venv/bin/pip install torch numpy pillow safetensors

Run from the repository root, e.g.:

    .venv/bin/python bench/torch_reference.py --model conv --csv /tmp/conv.csv
    .venv/bin/python bench/torch_reference.py --model linear --epochs 2 --threads 2
    .venv/bin/python bench/torch_reference.py --model conv --save-init /tmp/init.safetensors
    ./target/release/bench-cli --model conv --init-from /tmp/init.safetensors --out /tmp/rust
    .venv/bin/python bench/torch_reference.py --model conv --dtype float64 \
        --dump-grads /tmp/grads.safetensors

What it does (the seed's experiment, a 2016 Chainer script):

- Data: the frames in --data (65x65 8-bit grey PNGs, sorted by the number in their name),
  values / 255. The first 5/6 of the frames train (126 of 152), the rest are held out.
  Windows of 26 frames with stride 25 (train: 5 windows, test: 1). In a window, step t
  reads frame t and predicts frame t+1; h and c start at zero in every window.
- Window loss: the sum over the 25 steps of the per-step mean squared error.
- One optimizer update per training window, windows in order. Adam, lr 1e-3, either
  Chainer's form (default, what the seed ran) or torch.optim.Adam.
- Models (gates stacked i, f, g, o as in nn.LSTM):
  linear: nn.LSTM(4225, H) + nn.Linear(H, 4225); the prediction is out(h).
  conv:   4-channel 5x5 convolutions of x and h (padding 2), no output layer; the
          prediction is h.
  --separate builds the seed's eight separate gate layers instead (same numbers, slower);
  its weights are read and written under the fused names, so files are interchangeable.
- Init: torch.manual_seed(seed), then every weight ~ Normal(0, sqrt(1/fan_in)) (drawn in
  float32 in state-dict order), biases zero.

Output: one line per epoch on stdout (losses as repr), and with --csv the rows
`epoch,train_loss,test_loss,seconds,frames_per_second`, the same columns as the Rust CLI:
train_loss is the mean over the epoch's windows of the loss before each update, test_loss
the mean window loss on the held-out windows after the epoch, seconds the wall time of the
epoch's updates (not the test pass), frames_per_second the training steps per second.
"""

import argparse
import csv
import math
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

SEQ_LEN = 26  # frames per window: 25 steps
STRIDE = 25  # neighbouring windows share one frame
KERNEL = 5  # conv model's kernel side
GATES = 4  # i, f, g, o


# ----------------------------------------------------------------------------------------
# Data


def load_frames(folder):
    """All images in `folder`, sorted by the number in their name, as [N, 1, H, W] in [0, 1]."""

    def number(path):
        digits = re.findall(r"\d+", path.stem)
        return (int(digits[-1]) if digits else -1, path.name)

    paths = sorted(
        (p for p in Path(folder).iterdir() if p.suffix.lower() in {".png", ".jpg", ".bmp"}),
        key=number,
    )
    if not paths:
        sys.exit(f"no frames in {folder}")
    frames = [np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255 for p in paths]
    return torch.from_numpy(np.stack(frames)).unsqueeze(1)  # [N, 1, H, W]


def windows(frames):
    """Windows of SEQ_LEN frames, STRIDE apart, that fit inside `frames`."""
    return [frames[s : s + SEQ_LEN] for s in range(0, len(frames) - SEQ_LEN + 1, STRIDE)]


def split(frames):
    """Train on the leading 5/6 of the frames, but hold out at least one window."""
    n_train = min(len(frames) * 5 // 6, len(frames) - SEQ_LEN)
    return windows(frames[:n_train]), windows(frames[n_train:])


def window_loss(predictions, window):
    """Sum over steps of the per-step mean squared error; predictions are [T, C, H, W]."""
    targets = window[1:]
    return (predictions - targets).pow(2).flatten(1).mean(1).sum()


# ----------------------------------------------------------------------------------------
# Models. Every model maps a window's inputs [T, 1, H, W] to predictions [T, 1, H, W] and
# exposes its weights under the fused (nn.LSTM-style) names via `fused()`/`load_fused()`.


def lstm_cell(preact, c):
    """One LSTM step from pre-activations stacked i, f, g, o along dim 1."""
    i, f, g, o = preact.chunk(GATES, dim=1)
    c = torch.tanh(g) * torch.sigmoid(i) + torch.sigmoid(f) * c
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


class FusedNames:
    """For models whose own parameter names are already the fused names."""

    def fused(self, of=lambda p: p.detach()):
        return {name: of(p) for name, p in self.named_parameters()}

    def load_fused(self, state):
        self.load_state_dict(state, strict=True)


class LinearLSTM(FusedNames, nn.Module):
    """nn.LSTM(D, H) over the window, then nn.Linear(H, D) on every h."""

    def __init__(self, frame_len, hidden):
        super().__init__()
        self.lstm = nn.LSTM(frame_len, hidden)
        self.out = nn.Linear(hidden, frame_len)

    def forward(self, x):  # x: [T, 1, H, W]
        hs, _ = self.lstm(x.flatten(1).unsqueeze(1))  # [T, 1, hidden]; h0 = c0 = 0
        return self.out(hs.squeeze(1)).view_as(x)


class ConvLSTMCell(nn.Module):
    """Parameters of the conv model, named like nn.LSTM's."""

    def __init__(self, kernel=KERNEL):
        super().__init__()
        self.weight_ih_l0 = nn.Parameter(torch.empty(GATES, 1, kernel, kernel))
        self.weight_hh_l0 = nn.Parameter(torch.empty(GATES, 1, kernel, kernel))
        self.bias_ih_l0 = nn.Parameter(torch.empty(GATES))
        self.bias_hh_l0 = nn.Parameter(torch.empty(GATES))


class ConvLSTM(FusedNames, nn.Module):
    """ConvLSTM with one channel of h and c; the prediction is h."""

    def __init__(self):
        super().__init__()
        self.convlstm = ConvLSTMCell()

    def forward(self, x):  # x: [T, 1, H, W]
        cell, pad = self.convlstm, KERNEL // 2
        # The input half of the gates does not depend on h: all steps in one call.
        preact_x = F.conv2d(x, cell.weight_ih_l0, cell.bias_ih_l0, padding=pad)  # [T, 4, H, W]
        h = c = torch.zeros_like(x[:1])  # [1, 1, H, W]
        hs = []
        for t in range(len(x)):
            preact = preact_x[t : t + 1] + F.conv2d(h, cell.weight_hh_l0, cell.bias_hh_l0, padding=pad)
            h, c = lstm_cell(preact, c)
            hs.append(h)
        return torch.cat(hs)


class Separate(nn.Module):
    """The seed's layout: one layer per gate for x and one for h, called step by step."""

    prefix = ""  # fused name prefix, set by subclasses

    def forward(self, x):  # x: [T, 1, H, W]
        h, c = self.initial_state(x)
        hs = []
        for t in range(len(x)):
            xt = self.input(x[t : t + 1])
            preact = torch.cat([lx(xt) + lh(h) for lx, lh in zip(self.x_gates, self.h_gates)], dim=1)
            h, c = lstm_cell(preact, c)
            hs.append(h)
        return self.output(torch.cat(hs), x)

    def fused(self, of=lambda p: p.detach()):
        state = {}  # in nn.LSTM's order: weight_ih, weight_hh, bias_ih, bias_hh
        for part in ("weight", "bias"):
            for kind, layers in (("ih", self.x_gates), ("hh", self.h_gates)):
                state[f"{self.prefix}.{part}_{kind}_l0"] = torch.cat([of(getattr(l, part)) for l in layers])
        for name, p in self.named_parameters():  # anything else (the output layer) as is
            if not name.startswith(("x_gates.", "h_gates.")):
                state[name] = of(p)
        return state

    @torch.no_grad()
    def load_fused(self, state):
        expected = set(self.fused())
        if set(state) != expected:
            raise KeyError(f"expected tensors {sorted(expected)}, got {sorted(state)}")
        for kind, layers in (("ih", self.x_gates), ("hh", self.h_gates)):
            weights = state[f"{self.prefix}.weight_{kind}_l0"].chunk(GATES)
            biases = state[f"{self.prefix}.bias_{kind}_l0"].chunk(GATES)
            for layer, w, b in zip(layers, weights, biases):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
        for name, p in self.named_parameters():
            if not name.startswith(("x_gates.", "h_gates.")):
                p.copy_(state[name])


class LinearLSTMSeparate(Separate):
    prefix = "lstm"

    def __init__(self, frame_len, hidden):
        super().__init__()
        self.hidden = hidden
        self.x_gates = nn.ModuleList(nn.Linear(frame_len, hidden) for _ in range(GATES))
        self.h_gates = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(GATES))
        self.out = nn.Linear(hidden, frame_len)

    def initial_state(self, x):
        zeros = x.new_zeros(1, self.hidden)
        return zeros, zeros

    def input(self, xt):
        return xt.flatten(1)  # [1, D]

    def output(self, hs, x):
        return self.out(hs).view_as(x)


class ConvLSTMSeparate(Separate):
    prefix = "convlstm"

    def __init__(self):
        super().__init__()
        conv = lambda: nn.Conv2d(1, 1, KERNEL, padding=KERNEL // 2)  # noqa: E731
        self.x_gates = nn.ModuleList(conv() for _ in range(GATES))
        self.h_gates = nn.ModuleList(conv() for _ in range(GATES))

    def initial_state(self, x):
        zeros = torch.zeros_like(x[:1])
        return zeros, zeros

    def input(self, xt):
        return xt

    def output(self, hs, x):
        return hs


def build_model(kind, frame_shape, hidden, separate):
    frame_len = math.prod(frame_shape)
    if kind == "linear":
        hidden = hidden or frame_len
        return LinearLSTMSeparate(frame_len, hidden) if separate else LinearLSTM(frame_len, hidden)
    return ConvLSTMSeparate() if separate else ConvLSTM()


@torch.no_grad()
def seed_init(model, seed):
    """The seed's init, drawn in float32 in fused state-dict order: weights ~ N(0, 1/fan_in),
    biases zero. Fused names make it independent of --separate and --dtype."""
    torch.manual_seed(seed)
    state = {}
    for name, p in model.fused().items():
        t = torch.zeros(p.shape, dtype=torch.float32)
        if "weight" in name:
            fan_in = math.prod(p.shape[1:])  # in_features, or in_channels * k * k
            t.normal_(0.0, math.sqrt(1.0 / fan_in))
        state[name] = t
    model.load_fused(state)


# ----------------------------------------------------------------------------------------
# Optimizer


class ChainerAdam:
    """chainer.optimizers.Adam (no weight decay, no amsgrad):
    m += (1-b1)(g-m); v += (1-b2)(g^2-v); p -= lr_t m / (sqrt(v) + eps),
    lr_t = lr sqrt(1-b2^t) / (1-b1^t). Unlike torch.optim.Adam, eps meets sqrt(v) before
    the bias correction."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params = list(params)
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        lr_t = self.lr * math.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            m.lerp_(g, 1 - self.b1)
            v.lerp_(g * g, 1 - self.b2)
            p.addcdiv_(m, v.sqrt().add_(self.eps), value=-lr_t)


def build_optimizer(form, params):
    if form == "torch":
        return torch.optim.Adam(params, lr=1e-3)
    return ChainerAdam(params, lr=1e-3)


# ----------------------------------------------------------------------------------------
# Main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["linear", "conv"], required=True)
    p.add_argument("--data", default="data", help="folder of frames (default: data)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden", type=int, help="hidden units of the linear model (default: one per pixel)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adam", choices=["chainer", "torch"], default="chainer")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--separate", action="store_true", help="the seed's eight separate gate layers")
    p.add_argument("--init-from", metavar="FILE", help="start from these weights (safetensors, strict)")
    p.add_argument("--save-init", metavar="FILE", help="save the initial weights (safetensors)")
    p.add_argument("--csv", metavar="FILE", help="write one row per epoch")
    p.add_argument(
        "--dump-grads",
        metavar="FILE",
        help="save the loss and gradients of the first training window at the initial "
        "weights (safetensors), then exit without training",
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    frames = load_frames(args.data).to(dtype)
    train_windows, test_windows = split(frames)
    steps_per_epoch = sum(len(w) - 1 for w in train_windows)

    model = build_model(args.model, frames.shape[1:], args.hidden, args.separate)
    if args.init_from:
        model.load_fused(load_file(args.init_from))
    else:
        seed_init(model, args.seed)
    model.to(dtype)
    if args.save_init:
        save_file({k: v.contiguous() for k, v in model.fused().items()}, args.save_init, metadata={"format": "pt"})

    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.dtype}; model {args.model}"
        f"{' (separate)' if args.separate else ''}: {n_params} parameters; "
        f"{len(frames)} frames, {len(train_windows)} train / {len(test_windows)} test windows; "
        f"Adam ({args.adam} form)"
    )

    if args.dump_grads:
        loss = window_loss(model(train_windows[0][:-1]), train_windows[0])
        loss.backward()
        grads = {k: g.contiguous() for k, g in model.fused(lambda p: p.grad).items()}
        print(f"first window loss {loss.item()!r}")
        for name, g in grads.items():
            print(f"  {name}: max |grad| {g.abs().max().item()!r}")
        grads["loss"] = loss.detach().reshape(1)
        save_file(grads, args.dump_grads, metadata={"format": "pt"})
        return

    optimizer = build_optimizer(args.adam, model.parameters())
    rows = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        losses = []
        for window in train_windows:
            optimizer.zero_grad(set_to_none=True)
            loss = window_loss(model(window[:-1]), window)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - start

        with torch.no_grad():
            test_loss = statistics.fmean(window_loss(model(w[:-1]), w).item() for w in test_windows)
        row = (epoch, statistics.fmean(losses), test_loss, seconds, steps_per_epoch / seconds)
        rows.append(row)
        print(f"epoch {epoch}/{args.epochs} train_loss {row[1]!r} test_loss {row[2]!r} {seconds:.3f} s {row[4]:.1f} frames/s")
        if args.csv:
            with open(args.csv, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["epoch", "train_loss", "test_loss", "seconds", "frames_per_second"])
                writer.writerows(rows)
    if rows:
        print(f"median {statistics.median(r[3] for r in rows):.3f} s/epoch")


if __name__ == "__main__":
    main()
