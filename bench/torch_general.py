"""Independent PyTorch reference (float64) for the generalised next-frame predictors:
multi-layer ConvLSTM with optional peepholes, patches and output heads, and the multi-layer
fully connected LSTM, trained one step ahead or as a forecast. It writes the test fixtures
under crates/*/tests/fixtures/general/ and checks itself against finite differences.

Install (CPU use is enough):

    python3 -m venv .venv && .venv/bin/pip install torch safetensors

Regenerate every fixture (run from the repository root; the files are deterministic):

    ATEN_CPU_CAPABILITY=avx2 .venv/bin/python bench/torch_general.py --all-fixtures \
        crates/lstm-conv/tests/fixtures/general crates/lstm-linear/tests/fixtures/general

The committed files are what PyTorch's AVX2 kernels write; its AVX-512 ones (the default where
the CPU has them) round some float64 convolutions differently in the last bit (the conv
cases seed and rgb, torch 2.15), so without the variable those files may change.

Other uses:

    .venv/bin/python bench/torch_general.py --self-check
    .venv/bin/python bench/torch_general.py --model conv --height 8 --width 8 --hidden 3 2 \
        --kernel 3 5 --head conv1x1 --batch 2 --seq-len 5 --out /tmp/case.safetensors
    .venv/bin/python bench/torch_general.py --model conv --patch 2 --hidden 3 2 --kernel 3 3 \
        --peephole --head conv1x1-sigmoid --context 3 --horizon 3 --out /tmp/forecast.safetensors

The contract (everything float64, PyTorch layout, gates stacked i, f, g, o as in nn.LSTM):

- Data: a batch of B windows [B, L, C, H, W]. Step t (t = 0 .. L-2) reads an input frame
  and predicts frame t+1; h and c start at zero in every window.
- Patches (conv model, --patch P): pixel_unshuffle(x, P) turns a frame [C, H, W] into
  [C*P*P, H/P, W/P] (channel c*P*P + py*P + px); the prediction goes back through
  pixel_shuffle before the loss.
- conv model, layer k (C_k hidden channels, odd kernel K_k, padding K_k // 2):
  pre = conv(x, convlstm.weight_ih_lk) + convlstm.bias_ih_lk
      + conv(h, convlstm.weight_hh_lk) + convlstm.bias_hh_lk,
  i = sigmoid(pre_i + w_ci * c_prev), f = sigmoid(pre_f + w_cf * c_prev), g = tanh(pre_g),
  c = f * c_prev + i * g, o = sigmoid(pre_o + w_co * c), h = o * tanh(c); the peephole
  weights convlstm.weight_c{i,f,o}_lk [C_k, H/P, W/P] exist only with --peephole (Shi et
  al. 2015: o peeks at the new c). Layer k+1 reads layer k's h of the same step.
  Heads: none (prediction = h of the last layer), conv1x1 (head.weight [C*P*P, C_last, 1, 1],
  head.bias), conv1x1-sigmoid (the same, then sigmoid), residual (input frame + conv1x1).
- linear model: a frame is flattened to D = C*H*W values; layer k has N_k units with
  nn.LSTM's names lstm.{weight,bias}_{ih,hh}_lk; prediction = out(h_last) (out.weight [D,
  N_last], out.bias [D]), no sigmoid. The cell is written out by hand (hidden sizes may
  differ); the self-check matches it against nn.LSTM.
- One-step training (default): every input is the true frame t; window loss = SUM over the
  L-1 steps of the per-step mean squared error (mean over C*H*W values).
- Forecast (--context K --horizon N, L = K + N): for t >= K the input of step t is the
  model's own (unpatched, then re-patched) prediction of step t-1, gradients flowing
  through it; window loss = MEAN over frames K .. K+N-1 (outputs of steps K-1 .. L-2) of
  the per-frame mean squared error.
- Batch loss = mean over the B windows.
- --loss bce (Shi et al.'s cross-entropy; a head that ends in a sigmoid: conv1x1-sigmoid,
  or linear-sigmoid for the linear model, out(h) then sigmoid): per frame the SUM over its
  values of F.binary_cross_entropy_with_logits of the head's logits (before the sigmoid,
  unpatched as the prediction is); window loss = SUM over the frames that count (every
  step's, or frames K .. K+N-1 when forecasting), batch loss = mean over the windows. The
  config gains "loss": "bce" (fixtures of the squared error have no "loss" key).
- Encoder-forecaster (--encoder-forecaster, conv, forecasts only; Shi et al.'s Fig. 3): the
  convlstm.* layers (the encoder) read the K context frames; a forecaster of the same layer
  shapes, forecaster.*_l{k}, starts from the encoder's final h and c layer by layer, reads
  zeros (no frames) for the N forecast steps, and the head (head.weight [C*P*P, sum of the
  hidden channels, 1, 1]) reads all its layers' h concatenated. The K-1 earlier
  predictions, which count for nothing, are the head's of zero states. The config gains
  "encoder_forecaster": true.
- Scheduled sampling (--sampling-truth p --sampling-seed s, forecasts only): forecast step t
  of window b reads the true frame t instead of the previous prediction where
  splitmix64(s ^ (t << 32) ^ b) >> 11, over 2^53, is below p (no gradient then flows to
  that prediction through the input). The config gains "sampling": [p, s].

A fixture (safetensors, float64) holds `window` (uniform in [0, 1]), every parameter under
its name, `grad.<name>` (the gradient of the batch loss), `loss` [1], `prediction`
[B, L-1, C, H, W] (every step's unpatched output) and one metadata key, `config` (JSON).
Values come from one torch.Generator seeded with the case's seed (--seed; fixture case i
of the conv table uses 1000 + i, of the linear table 2000 + i): first the window, then
the parameters in their listed order (per layer ih weight, hh weight, ih bias, hh bias,
then ci, cf, co; then the head's weight and bias), every one ~ Normal(0, 0.5).
"""

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

DTYPE = torch.float64
GATES = 4  # i, f, g, o
INIT_STD = 0.5  # every parameter (weights, biases, peepholes) ~ Normal(0, INIT_STD)
HEADS = ["none", "conv1x1", "conv1x1-sigmoid", "residual"]


# ----------------------------------------------------------------------------------------
# Configuration


def make_config(
    model,
    channels=1,
    height=8,
    width=8,
    hidden=(3,),
    kernel=None,
    peephole=False,
    head=None,
    patch=1,
    batch=1,
    seq_len=5,
    context=None,
    horizon=None,
    loss="mse",
    sampling=None,
    encoder_forecaster=False,
):
    """A checked config dict, with the keys (and key order) written to the fixtures."""
    hidden = [int(n) for n in hidden]
    if (context is None) != (horizon is None):
        raise ValueError("--context and --horizon go together")
    if context is not None:
        if context < 1 or horizon < 1:
            raise ValueError("context and horizon must be at least 1")
        seq_len = context + horizon
    if seq_len < 2:
        raise ValueError("a window needs at least two frames")
    if not hidden or min(hidden) < 1:
        raise ValueError("hidden sizes must be positive")
    if model == "conv":
        kernel = [5] * len(hidden) if kernel is None else [int(k) for k in kernel]
        if len(kernel) == 1 and len(hidden) > 1:
            kernel = kernel * len(hidden)
        if len(kernel) != len(hidden) or any(k < 1 or k % 2 == 0 for k in kernel):
            raise ValueError("one odd kernel side per layer")
        head = head or "none"
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}")
        if height % patch or width % patch:
            raise ValueError("height and width must be divisible by the patch side")
        if head == "none" and hidden[-1] != channels * patch * patch:
            raise ValueError("head none needs the last layer's channels == C*P*P")
    elif model == "linear":
        if kernel is not None or peephole or patch != 1 or head not in (None, "linear", "linear-sigmoid"):
            raise ValueError("the linear model has no kernel, peephole or patch options")
        kernel, head = None, head or "linear"
    else:
        raise ValueError(f"unknown model {model}")
    if loss not in ("mse", "bce"):
        raise ValueError("loss must be mse or bce")
    if loss == "bce" and head not in ("conv1x1-sigmoid", "linear-sigmoid"):
        raise ValueError("the cross-entropy needs a head that ends in a sigmoid")
    cfg = {
        "model": model,
        "channels": channels,
        "height": height,
        "width": width,
        "hidden": hidden,
        "kernel": kernel,
        "peephole": bool(peephole),
        "head": head,
        "patch": patch,
        "batch": batch,
        "seq_len": seq_len,
        "context": context,
        "horizon": horizon,
        "torch": torch.__version__,
    }
    if loss != "mse":
        cfg["loss"] = loss
    if encoder_forecaster:
        if model != "conv" or context is None or head not in ("conv1x1", "conv1x1-sigmoid"):
            raise ValueError("the encoder-forecaster is a conv forecast with an affine head")
        cfg["encoder_forecaster"] = True
    if sampling is not None:
        if context is None:
            raise ValueError("scheduled sampling needs a forecast")
        cfg["sampling"] = [float(sampling[0]), int(sampling[1])]
    return cfg


MASK64 = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def reads_truth(cfg, t, b):
    """Whether forecast step t of window b reads the true frame (scheduled sampling)."""
    if cfg.get("sampling") is None:
        return False
    truth, seed = cfg["sampling"]
    key = (seed ^ (t << 32) ^ (cfg.get("first_window", 0) + b)) & MASK64
    return (splitmix64(key) >> 11) / float(1 << 53) < truth


def param_shapes(cfg):
    """(name, shape) of every parameter, in the listed (and drawing) order."""
    if MODELS[cfg["model"]][1] is not None:
        return MODELS[cfg["model"]][1](cfg)
    C, H, W, P = cfg["channels"], cfg["height"], cfg["width"], cfg["patch"]
    shapes = []
    if cfg["model"] == "conv":
        c_in = C * P * P
        for k, (ck, kk) in enumerate(zip(cfg["hidden"], cfg["kernel"])):
            shapes += [
                (f"convlstm.weight_ih_l{k}", (GATES * ck, c_in, kk, kk)),
                (f"convlstm.weight_hh_l{k}", (GATES * ck, ck, kk, kk)),
                (f"convlstm.bias_ih_l{k}", (GATES * ck,)),
                (f"convlstm.bias_hh_l{k}", (GATES * ck,)),
            ]
            if cfg["peephole"]:
                shapes += [(f"convlstm.weight_c{g}_l{k}", (ck, H // P, W // P)) for g in "ifo"]
            c_in = ck
        if cfg.get("encoder_forecaster"):
            c_in = C * P * P
            for k, (ck, kk) in enumerate(zip(cfg["hidden"], cfg["kernel"])):
                shapes += [
                    (f"forecaster.weight_ih_l{k}", (GATES * ck, c_in, kk, kk)),
                    (f"forecaster.weight_hh_l{k}", (GATES * ck, ck, kk, kk)),
                    (f"forecaster.bias_ih_l{k}", (GATES * ck,)),
                    (f"forecaster.bias_hh_l{k}", (GATES * ck,)),
                ]
                if cfg["peephole"]:
                    shapes += [(f"forecaster.weight_c{g}_l{k}", (ck, H // P, W // P)) for g in "ifo"]
                c_in = ck
            c_in = sum(cfg["hidden"])
        if cfg["head"] != "none":
            shapes += [("head.weight", (C * P * P, c_in, 1, 1)), ("head.bias", (C * P * P,))]
    else:
        d = C * H * W
        n_in = d
        for k, nk in enumerate(cfg["hidden"]):
            shapes += [
                (f"lstm.weight_ih_l{k}", (GATES * nk, n_in)),
                (f"lstm.weight_hh_l{k}", (GATES * nk, nk)),
                (f"lstm.bias_ih_l{k}", (GATES * nk,)),
                (f"lstm.bias_hh_l{k}", (GATES * nk,)),
            ]
            n_in = nk
        shapes += [("out.weight", (d, n_in)), ("out.bias", (d,))]
    return shapes


def draw_case(cfg, seed):
    """The window and the parameters (a dict, in listed order), from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    shape = (cfg["batch"], cfg["seq_len"], cfg["channels"], cfg["height"], cfg["width"])
    window = torch.rand(shape, generator=gen, dtype=DTYPE)
    params = {}
    for name, pshape in param_shapes(cfg):
        params[name] = torch.randn(pshape, generator=gen, dtype=DTYPE) * INIT_STD
    return window, params


# ----------------------------------------------------------------------------------------
# Models: step functions. `state` is a list of (h, c) per layer (None before the first step).


def conv_step(cfg, params, x, state):
    """One ConvLSTM step on a patched frame x [B, C*P*P, H', W']: (patched prediction, state)."""
    new_state = conv_layers(cfg, params, x, state, "convlstm")
    return conv_head(cfg, params, new_state[-1][0], x) + (new_state,)


def conv_head(cfg, params, inp, x):
    """(prediction, logits or None) of the head from h `inp` and the step's input x."""
    head = cfg["head"]
    logits = None
    if head == "none":
        out = inp
    else:
        out = F.conv2d(inp, params["head.weight"], params["head.bias"])
        if head == "conv1x1-sigmoid":
            logits, out = out, torch.sigmoid(out)
        elif head == "residual":
            out = x + out
    return out, logits


def conv_layers(cfg, params, x, state, prefix):
    """One step of the layers named `prefix` on x: [(h, c)] per layer."""
    new_state = []
    inp = x
    for k, (ck, kk) in enumerate(zip(cfg["hidden"], cfg["kernel"])):
        pad = kk // 2
        if state is None:
            h = c = x.new_zeros(x.shape[0], ck, x.shape[2], x.shape[3])
        else:
            h, c = state[k]
        pre = F.conv2d(inp, params[f"{prefix}.weight_ih_l{k}"], params[f"{prefix}.bias_ih_l{k}"], padding=pad)
        pre = pre + F.conv2d(h, params[f"{prefix}.weight_hh_l{k}"], params[f"{prefix}.bias_hh_l{k}"], padding=pad)
        pre_i, pre_f, pre_g, pre_o = pre.chunk(GATES, dim=1)
        if cfg["peephole"]:
            pre_i = pre_i + params[f"{prefix}.weight_ci_l{k}"] * c
            pre_f = pre_f + params[f"{prefix}.weight_cf_l{k}"] * c
        i, f, g = torch.sigmoid(pre_i), torch.sigmoid(pre_f), torch.tanh(pre_g)
        c = f * c + i * g
        if cfg["peephole"]:
            pre_o = pre_o + params[f"{prefix}.weight_co_l{k}"] * c  # the new c
        h = torch.sigmoid(pre_o) * torch.tanh(c)
        new_state.append((h, c))
        inp = h
    return new_state


def encoder_forecaster(cfg, params, window, encode, decode):
    """Every step's (prediction, logits) of Shi et al.'s encoder-forecaster (see the
    docstring), unpatched."""
    L, K = window.shape[1], cfg["context"]
    state, outputs = None, []
    x = encode(window[:, 0])
    zeros = [x.new_zeros(x.shape[0], ck, *x.shape[2:]) for ck in cfg["hidden"]]
    for t in range(K):
        state = conv_layers(cfg, params, encode(window[:, t]), state, "convlstm")
        if t < K - 1:
            outputs.append(conv_head(cfg, params, torch.cat(zeros, 1), x))
    blind = torch.zeros_like(x)
    for t in range(K - 1, L - 1):
        state = conv_layers(cfg, params, blind, state, "forecaster")
        outputs.append(conv_head(cfg, params, torch.cat([h for h, _ in state], 1), blind))
    return [(decode(y), None if z is None else decode(z)) for y, z in outputs]


def linear_step(cfg, params, x, state):
    """One step of the fully connected LSTM on a flat frame x [B, D]: (prediction, state)."""
    new_state = []
    inp = x
    for k, nk in enumerate(cfg["hidden"]):
        if state is None:
            h = c = x.new_zeros(x.shape[0], nk)
        else:
            h, c = state[k]
        pre = F.linear(inp, params[f"lstm.weight_ih_l{k}"], params[f"lstm.bias_ih_l{k}"])
        pre = pre + F.linear(h, params[f"lstm.weight_hh_l{k}"], params[f"lstm.bias_hh_l{k}"])
        pre_i, pre_f, pre_g, pre_o = pre.chunk(GATES, dim=1)
        c = torch.sigmoid(pre_f) * c + torch.sigmoid(pre_i) * torch.tanh(pre_g)
        h = torch.sigmoid(pre_o) * torch.tanh(c)
        new_state.append((h, c))
        inp = h
    out = F.linear(inp, params["out.weight"], params["out.bias"])
    if cfg["head"] == "linear-sigmoid":
        return torch.sigmoid(out), out, new_state
    return out, None, new_state


# Each model's step function and, where param_shapes does not list it, its own parameter
# list; other scripts add models here (bench/torch_predrnn.py adds "predrnn").
MODELS = {"conv": (conv_step, None), "linear": (linear_step, None)}


def run(cfg, params, window):
    """Predictions [B, L-1, C, H, W] (unpatched) and the batch loss of `window` [B, L, C, H, W]."""
    B, L = window.shape[:2]
    frame_shape = window.shape[2:]
    if cfg["model"] != "linear":
        P = cfg["patch"]
        encode = lambda f: F.pixel_unshuffle(f, P)  # noqa: E731  [B, C, H, W] -> [B, CPP, H/P, W/P]
        decode = lambda y: F.pixel_shuffle(y, P)  # noqa: E731
    else:
        encode = lambda f: f.reshape(B, -1)  # noqa: E731
        decode = lambda y: y.reshape(B, *frame_shape)  # noqa: E731
    step = MODELS[cfg["model"]][0]
    context = cfg["context"]
    state, preds, logits = None, [], []
    if cfg.get("encoder_forecaster"):
        outputs = encoder_forecaster(cfg, params, window, encode, decode)
        preds = [y for y, _ in outputs]
        logits = [z for _, z in outputs if z is not None]
    for t in range(len(preds), L - 1):
        if context is None or t < context:
            frame = window[:, t]
        else:
            truth = torch.tensor([reads_truth(cfg, t, b) for b in range(B)]).view(B, *[1] * len(frame_shape))
            frame = torch.where(truth, window[:, t], preds[-1])
        y, z, state = step(cfg, params, encode(frame), state)
        preds.append(decode(y))
        if z is not None:
            logits.append(decode(z))
    pred = torch.stack(preds, dim=1)  # [B, L-1, C, H, W]
    counted = slice(None) if context is None else slice(context - 1, None)  # frames K .. K+N-1
    if cfg.get("loss", "mse") == "bce":
        z = torch.stack(logits, dim=1)
        per_frame = F.binary_cross_entropy_with_logits(z, window[:, 1:], reduction="none").flatten(2).sum(2)
        return pred, per_frame[:, counted].sum(1).mean()
    per_frame = (pred - window[:, 1:]).pow(2).flatten(2).mean(2)  # [B, L-1]
    if context is None:
        per_window = per_frame.sum(1)
    else:
        per_window = per_frame[:, counted].mean(1)
    return pred, per_window.mean()


def loss_and_grads(cfg, params, window):
    """(prediction, loss, {name: grad}) at `params` (which are not modified)."""
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    pred, loss = run(cfg, leaves, window)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return pred.detach(), loss.detach(), dict(zip(leaves, grads))


# ----------------------------------------------------------------------------------------
# Fixtures

CONV_CASES = [
    ("seed", dict(channels=1, height=9, width=7, hidden=[1], kernel=[5], head="none", batch=1, seq_len=5)),
    ("two-layers", dict(channels=1, height=8, width=8, hidden=[3, 2], kernel=[3, 5], head="conv1x1", batch=2, seq_len=5)),
    ("peephole", dict(channels=1, height=7, width=6, hidden=[2, 1], kernel=[3, 3], peephole=True, head="none", batch=2, seq_len=5)),
    ("patch-sigmoid", dict(channels=1, height=8, width=8, patch=2, hidden=[3], kernel=[3], peephole=True, head="conv1x1-sigmoid", batch=3, seq_len=4)),
    ("rgb", dict(channels=3, height=6, width=5, hidden=[4, 3], kernel=[3, 3], head="conv1x1", batch=2, seq_len=4)),
    ("forecast", dict(channels=1, height=8, width=8, patch=2, hidden=[3, 2], kernel=[3, 3], peephole=True, head="conv1x1-sigmoid", batch=2, context=3, horizon=3)),
    ("residual", dict(channels=1, height=8, width=8, patch=2, hidden=[3], kernel=[3], head="residual", batch=2, seq_len=5)),
    ("residual-forecast", dict(channels=1, height=8, width=8, patch=2, hidden=[3], kernel=[3], head="residual", batch=2, context=2, horizon=3)),
    # Every convolution and the head have C_in * C_out >= 64: the Rust slice driver runs them
    # as matrix products (lstm-conv's lowered.rs / implicit.rs), not direct convolutions.
    ("many-channels", dict(channels=1, height=16, width=16, patch=4, hidden=[16, 8], kernel=[3, 3], head="conv1x1", batch=2, seq_len=5)),
    ("bce-forecast", dict(channels=1, height=8, width=8, patch=2, hidden=[3, 2], kernel=[3, 3], peephole=True, head="conv1x1-sigmoid", batch=2, context=3, horizon=3, loss="bce")),
    ("bce-one-step", dict(channels=1, height=16, width=16, patch=4, hidden=[16], kernel=[3], head="conv1x1-sigmoid", batch=2, seq_len=4, loss="bce")),
    ("sampled-forecast", dict(channels=1, height=8, width=8, patch=2, hidden=[3, 2], kernel=[3, 3], head="conv1x1-sigmoid", batch=4, context=2, horizon=3, sampling=(0.5, 11))),
    ("encoder-forecaster", dict(channels=1, height=8, width=8, patch=2, hidden=[3, 2], kernel=[3, 5], peephole=True, head="conv1x1-sigmoid", batch=2, context=3, horizon=3, loss="bce", encoder_forecaster=True)),
]
LINEAR_CASES = [
    ("seed", dict(channels=1, height=3, width=4, hidden=[6], batch=1, seq_len=5)),
    ("two-layers", dict(channels=1, height=3, width=4, hidden=[5, 4], batch=2, seq_len=5)),
    ("rgb", dict(channels=3, height=2, width=3, hidden=[5], batch=2, seq_len=4)),
    ("forecast", dict(channels=1, height=3, width=4, hidden=[5, 4], batch=2, context=3, horizon=2)),
    ("bce-forecast", dict(channels=1, height=3, width=4, hidden=[5, 4], head="linear-sigmoid", batch=2, context=3, horizon=2, loss="bce")),
]
CONV_SEED_BASE, LINEAR_SEED_BASE = 1000, 2000  # case i draws from seed BASE + i


def all_cases():
    """(model, name, config, seed) of every fixture."""
    cases = []
    for model, table, base in (("conv", CONV_CASES, CONV_SEED_BASE), ("linear", LINEAR_CASES, LINEAR_SEED_BASE)):
        for i, (name, kwargs) in enumerate(table):
            cases.append((model, name, make_config(model, **kwargs), base + i))
    return cases


def write_fixture(cfg, seed, path):
    window, params = draw_case(cfg, seed)
    pred, loss, grads = loss_and_grads(cfg, params, window)
    tensors = {"window": window}
    tensors.update(params)
    tensors.update({f"grad.{n}": g for n, g in grads.items()})
    tensors["loss"] = loss.reshape(1)
    tensors["prediction"] = pred
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    # One metadata key only: safetensors writes several in no fixed order, and the files
    # should come out byte for byte the same on every run.
    meta = {"config": json.dumps(cfg)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return loss.item()


# ----------------------------------------------------------------------------------------
# Self-checks


def finite_differences(cfg, seed, per_param=3, step=1e-6, rng_seed=0):
    """Central differences on `per_param` random entries of every parameter; returns the rows
    (name, index, autograd, finite difference)."""
    window, params = draw_case(cfg, seed)
    _, _, grads = loss_and_grads(cfg, params, window)
    pick = torch.Generator().manual_seed(rng_seed)
    rows = []
    with torch.no_grad():
        for name, p in params.items():
            flat = p.view(-1)
            count = min(per_param, flat.numel())
            for idx in torch.randperm(flat.numel(), generator=pick)[:count].tolist():
                old = flat[idx].item()
                flat[idx] = old + step
                plus = run(cfg, params, window)[1].item()
                flat[idx] = old - step
                minus = run(cfg, params, window)[1].item()
                flat[idx] = old
                rows.append((name, idx, grads[name].view(-1)[idx].item(), (plus - minus) / (2 * step)))
    return rows


def plain_convlstm(w_ih, w_hh, b_ih, b_hh, frames):
    """The textbook one-layer ConvLSTM on one window [L, 1, H, W] (one conv over x, one over
    h, prediction = h), written without the general code: predictions [L-1, 1, H, W]."""
    pad = w_ih.shape[-1] // 2
    h = c = frames.new_zeros(1, w_hh.shape[1], *frames.shape[2:])
    out = []
    for t in range(len(frames) - 1):
        z = F.conv2d(frames[t : t + 1], w_ih, b_ih, padding=pad) + F.conv2d(h, w_hh, b_hh, padding=pad)
        n = w_hh.shape[1]
        i, f, g, o = (z[:, j * n : (j + 1) * n] for j in range(4))
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
    return torch.cat(out)


def check_conv_seed(cfg, seed):
    """Case `seed` against plain_convlstm: max abs differences of prediction, loss, grads."""
    window, params = draw_case(cfg, seed)
    assert window.shape[0] == 1
    pred, loss, grads = loss_and_grads(cfg, params, window)
    names = ["convlstm.weight_ih_l0", "convlstm.weight_hh_l0", "convlstm.bias_ih_l0", "convlstm.bias_hh_l0"]
    assert list(params) == names
    leaves = [params[n].clone().requires_grad_(True) for n in names]
    ref_pred = plain_convlstm(*leaves, window[0])
    ref_loss = sum(((ref_pred[t] - window[0, t + 1]) ** 2).mean() for t in range(len(ref_pred)))
    ref_grads = torch.autograd.grad(ref_loss, leaves)
    return (
        (pred[0] - ref_pred).abs().max().item(),
        abs(loss.item() - ref_loss.item()),
        max((grads[n] - g).abs().max().item() for n, g in zip(names, ref_grads)),
    )


def check_linear_vs_nn_lstm(cfg, seed):
    """One-step predictions of the hand-written cell against nn.LSTM: one nn.LSTM with
    num_layers when all sizes are equal, else a stack of one-layer nn.LSTMs."""
    window, params = draw_case(cfg, seed)
    cfg = dict(cfg, context=None, horizon=None)
    with torch.no_grad():
        pred, _ = run(cfg, params, window)
        hidden = cfg["hidden"]
        x = window[:, :-1].flatten(2)  # [B, L-1, D]
        if len(set(hidden)) == 1:
            lstms = [torch.nn.LSTM(x.shape[-1], hidden[0], num_layers=len(hidden), batch_first=True).to(DTYPE)]
            lstms[0].load_state_dict({n[len("lstm.") :]: p for n, p in params.items() if n.startswith("lstm.")})
        else:
            lstms = []
            for k, nk in enumerate(hidden):
                m = torch.nn.LSTM(x.shape[-1] if k == 0 else hidden[k - 1], nk, batch_first=True).to(DTYPE)
                m.load_state_dict({n[len("lstm.") :].replace(f"_l{k}", "_l0"): p for n, p in params.items() if n.endswith(f"_l{k}") and n.startswith("lstm.")})
                lstms.append(m)
        hs = x
        for m in lstms:
            hs, _ = m(hs)
        ref = F.linear(hs, params["out.weight"], params["out.bias"])
        if cfg["head"] == "linear-sigmoid":
            ref = torch.sigmoid(ref)
        ref = ref.reshape(pred.shape)
    return (pred - ref).abs().max().item(), len(lstms) == 1


def self_check(per_param=5):
    ok = True
    # Layout of pixel_unshuffle: channel c*P*P + py*P + px.
    x = torch.arange(2 * 4 * 6, dtype=DTYPE).reshape(1, 2, 4, 6)
    u = F.pixel_unshuffle(x, 2)
    assert all(
        u[0, c * 4 + py * 2 + px, y, xx] == x[0, c, 2 * y + py, 2 * xx + px]
        for c in range(2) for py in range(2) for px in range(2) for y in range(2) for xx in range(3)
    )
    assert torch.equal(F.pixel_shuffle(u, 2), x)
    print("pixel_unshuffle layout c*P*P + py*P + px: ok")

    cases = {(m, n): (cfg, seed) for m, n, cfg, seed in all_cases()}
    pa, la, ga = check_conv_seed(*cases[("conv", "seed")])
    print(f"conv seed vs plain one-layer ConvLSTM: max |d prediction| {pa:.3e}, |d loss| {la:.3e}, max |d grad| {ga:.3e}")
    ok &= max(pa, la, ga) <= 1e-12
    for (m, n), (cfg, seed) in cases.items():
        if m == "linear":
            d, fused = check_linear_vs_nn_lstm(cfg, seed)
            how = f"nn.LSTM(num_layers={len(cfg['hidden'])})" if fused else "stacked one-layer nn.LSTMs"
            print(f"linear {n} vs {how}: max |d prediction| {d:.3e}")
            ok &= d <= 1e-12

    # Central differences carry a rounding error of about eps * loss / step (~1e-10 here),
    # so the relative figure is meaningful only for entries whose gradient is not tiny.
    worst = 0.0  # the batch loss is the mean of the windows' own losses, run one by one
    for (m, n), (cfg, seed) in cases.items():
        window, params = draw_case(cfg, seed)
        with torch.no_grad():
            batch_pred, batch_loss = run(cfg, params, window)
            alone = [run(dict(cfg, batch=1, first_window=b), params, window[b : b + 1]) for b in range(len(window))]
        worst = max(
            worst,
            abs(batch_loss.item() - sum(l.item() for _, l in alone) / len(alone)),
            max((batch_pred[b] - p[0]).abs().max().item() for b, (p, _) in enumerate(alone)),
        )
    print(f"batched runs vs windows one by one (every case): max difference {worst:.3e}")
    ok &= worst <= 1e-12

    # The round-off grows with the loss: the cross-entropy cases' losses are in the hundreds
    # (a sum over values), so their bounds are scaled by the loss.
    print(f"central differences (step 1e-6), {per_param} random entries per parameter:")
    for (m, n), (cfg, seed) in cases.items():
        rows = finite_differences(cfg, seed, per_param)
        window, params = draw_case(cfg, seed)
        with torch.no_grad():
            scale = max(1.0, run(cfg, params, window)[1].item())
        worst_abs = max(abs(a - f) for _, _, a, f in rows)
        big = [(name, i, a, f) for name, i, a, f in rows if abs(a) >= 1e-4 * scale]
        # An entry no gradient reaches (the blind forecaster's input weights) counts by its
        # finite difference alone.
        rel = lambda r: abs(r[2] - r[3]) / abs(r[2]) if r[2] else abs(r[3])  # noqa: E731
        worst = max(rows, key=rel)
        worst_big = max(map(rel, big))
        print(
            f"  {m:6} {n:18} {len(rows):3} entries: max |ad - fd| {worst_abs:.2e}; max rel {rel(worst):.2e} "
            f"(|grad| {abs(worst[2]):.1e}, {worst[0]}); max rel where |grad| >= 1e-4 x loss ({len(big)} entries) {worst_big:.2e}"
        )
        ok &= worst_abs <= 2e-9 * scale and worst_big <= 1e-5
    print("self-check", "passed" if ok else "FAILED")
    return ok


# ----------------------------------------------------------------------------------------
# Main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--all-fixtures", nargs=2, metavar=("DIR_CONV", "DIR_LINEAR"), help="write every case")
    p.add_argument("--self-check", action="store_true", help="finite differences and cross-checks")
    p.add_argument("--fd-entries", type=int, default=5, help="entries per parameter in --self-check")
    p.add_argument("--model", choices=["conv", "linear"])
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--height", type=int, default=8)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--hidden", type=int, nargs="+", default=[3], help="channels / units per layer")
    p.add_argument("--kernel", type=int, nargs="+", help="odd kernel side per layer (conv; default 5)")
    p.add_argument("--peephole", action="store_true")
    p.add_argument("--head", choices=HEADS + ["linear", "linear-sigmoid"], help="conv head (default none); linear model: linear or linear-sigmoid")
    p.add_argument("--loss", choices=["mse", "bce"], default="mse")
    p.add_argument("--encoder-forecaster", action="store_true", help="Shi et al.'s encoder-forecaster (conv forecasts)")
    p.add_argument("--sampling-truth", type=float, help="scheduled sampling: chance a forecast step reads the truth")
    p.add_argument("--sampling-seed", type=int, default=0, help="scheduled sampling: the draws' seed")
    p.add_argument("--patch", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=5, help="frames per window (one-step mode)")
    p.add_argument("--context", type=int, help="forecast: frames read before feeding back")
    p.add_argument("--horizon", type=int, help="forecast: frames predicted and scored")
    p.add_argument("--seed", type=int, default=0, help="torch.Generator seed of window and parameters")
    p.add_argument("--out", metavar="FILE", help="write one case here (safetensors)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.self_check:
        if not self_check(args.fd_entries):
            sys.exit(1)
    if args.all_fixtures:
        dirs = {"conv": Path(args.all_fixtures[0]), "linear": Path(args.all_fixtures[1])}
        for model, name, cfg, seed in all_cases():
            path = dirs[model] / f"{name}.safetensors"
            loss = write_fixture(cfg, seed, path)
            print(f"{path} ({path.stat().st_size} bytes): loss {loss!r}")
    if args.model:
        cfg = make_config(
            args.model, args.channels, args.height, args.width, args.hidden, args.kernel,
            args.peephole, args.head, args.patch, args.batch, args.seq_len, args.context, args.horizon,
            args.loss, None if args.sampling_truth is None else (args.sampling_truth, args.sampling_seed),
            args.encoder_forecaster,
        )
        if args.out:
            loss = write_fixture(cfg, args.seed, args.out)
        else:
            window, params = draw_case(cfg, args.seed)
            loss = run(cfg, params, window)[1].item()
        print(f"{json.dumps(cfg)}: loss {loss!r}")
    if not (args.self_check or args.all_fixtures or args.model):
        sys.exit("nothing to do: give --all-fixtures, --self-check or --model")


if __name__ == "__main__":
    main()
