"""PyTorch CPU timing of one training batch of the two-layer patched ConvLSTM, in several
equivalent forms, to set against the Rust (candle) ConvLSTM on the same machine.

Install (CPU use is enough; the plain PyPI wheel works even though it pulls CUDA libraries):

    python3 -m venv .venv && .venv/bin/pip install torch

Run from the repository root. The whole table (every variant, contiguous and channels_last,
1 and 2 threads, each configuration in its own process, two rounds; one warm-up batch is
enough, the first batch is within the spread of the rest; about 7 minutes on a 2-core AVX2
machine, 9 with the default two warm-up batches):

    .venv/bin/python bench/torch_convlstm.py --rounds 2 --warmup 1 --csv /tmp/torch_convlstm.csv

Check that every variant (both memory formats, with and without peepholes) gives the same
loss and gradients from the same weights (float32; loss to 1e-5 relative, every gradient to
1e-4 of its tensor's largest entry), and that they match bench/torch_general.py's float64
model (head conv1x1-sigmoid) on the same weights and window (needs safetensors, which that
file imports; skipped without it); about 45 s. (separate-folded's input-convolution weight
and bias gradients differ from the others by about 1e-5 of their largest entry, the others by
under 1e-6: one float32 reduction over all 19*16 samples instead of per-step sums.)

    .venv/bin/python bench/torch_convlstm.py --check

One configuration in this process (its peak RSS is this process's own):

    .venv/bin/python bench/torch_convlstm.py --variant separate-folded --threads 2 \
        --channels-last --warmup 2 --batches 5
    .venv/bin/python bench/torch_convlstm.py --variant fused --threads 1 --peephole

Other driver selections: --variants fused separate, --formats contiguous, --thread-list 1,
--no-mkldnn (convolutions without oneDNN, i.e. PyTorch's own im2col + BLAS path).

What is timed (float32, CPU): one training batch = optimizer.zero_grad, the forward pass
over the window (patching included), the loss, backward through time and one
torch.optim.Adam(lr=1e-3) step. The data (random, uniform in [0, 1]; content does not
matter for time) is drawn once before timing and reused.

- Frames 64x64, 1 channel, cut into 4x4 patches by F.pixel_unshuffle(x, 4): 16 channels of
  16x16. Batch of 16 windows of 20 frames: 19 steps; step t reads frame t and predicts frame
  t+1; h and c start at zero.
- Two ConvLSTM layers of 32 hidden channels, 5x5 kernels, padding 2, gates stacked i, f, g, o:
  pre = conv(x, W_ih) + b_ih + conv(h, W_hh) + b_hh,
  i = sigmoid(pre_i + w_ci * c_prev), f = sigmoid(pre_f + w_cf * c_prev), g = tanh(pre_g),
  c = f * c_prev + i * g, o = sigmoid(pre_o + w_co * c), h = o * tanh(c);
  the peephole terms (w_c* [32, 16, 16]) only with --peephole (default: none). Layer 1 reads
  layer 0's h of the same step.
- Head: 1x1 conv 32 -> 16 channels, sigmoid, then F.pixel_shuffle(., 4) back to [1, 64, 64].
- Loss (exactly what is computed): per step and window the mean over the 4096 pixels of the
  squared error; summed over the 19 steps; then the mean over the 16 windows. (This equals
  19 * the MSE over the whole batch.)

Variants (each its own nn.Module; same function, same weights through one canonical state
dict with the project's names convlstm.{weight,bias}_{ih,hh}_lk, convlstm.weight_c{i,f,o}_lk,
head.{weight,bias}):

- fused: per layer one nn.Conv2d(C_in + C, 4C, 5, padding=2) over torch.cat([x, h], 1) per
  step (the ConvLSTM_pytorch form); its single bias is b_ih + b_hh.
- separate: per layer conv_x = nn.Conv2d(C_in, 4C, 5, padding=2) and conv_h =
  nn.Conv2d(C, 4C, 5, padding=2) (both with bias), both called every step.
- separate-folded: as separate, but the input convolution of a layer runs once for all 19
  steps over the folded batch [19*16, C_in, 16, 16]: layer 0 over all steps, then layer 1's
  input conv over layer 0's h of all steps; the head also runs once over all steps.
  Only conv_h stays inside the time loop.
Each runs contiguous (NCHW) or with --channels-last (weights, inputs and states in
torch.channels_last). Note that with Adam the fused bias (one tensor) and the two separate
biases train differently after the first update, so only the first loss is identical.

Convolution FLOPs (printed per batch): per sample and step each convolution costs
2 * C_out * C_in * K * K * H * W forward; backward counts 2x forward (data and weight
gradients) for every convolution except layer 0's input convolution, 1x (weight gradient
only: the frames need no gradient). The count is nominal and the same for every variant: it
ignores that the step-0 h is zero (separate forms skip its data gradient), that the fused
form also computes the unused data gradient of layer 0's frame channels, bias and
element-wise work. GFLOP/s = that count / the median seconds per batch.

Output: one line per (variant, memory format, threads, round): median seconds per batch over
--batches timed batches after --warmup untimed ones, min-max, peak resident memory of that
process (the driver runs every configuration in its own subprocess and reads its ru_maxrss
with os.wait4; the resident size after building the model and data, before the first
batch, is shown as "base"), and GFLOP/s. With several rounds a summary pools the timed
batches of all rounds (median, min-max; peak = the largest). --csv FILE writes the rows
variant,memory_format,threads,peephole,round,median_s,min_s,max_s,warmup_s (the untimed
batches' seconds, space-separated),peak_mb,base_mb,gflop_per_batch,gflop_per_s,load (the
1-minute load average when the run ended; the largest in the summary; round "all" for the
pooled summary). On a shared machine, compare rows only at low load: with 2 threads on 2
cores any other busy process stalls OpenMP's barriers and the time balloons.
"""

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

GATES = 4  # i, f, g, o
VARIANTS = ["fused", "separate", "separate-folded"]
FORMATS = ["contiguous", "channels_last"]


# ----------------------------------------------------------------------------------------
# Configuration and FLOP count


def geometry(args):
    """(patched channels, patched side, per-layer (C_in, C)) of the configuration."""
    if args.size % args.patch:
        raise SystemExit("--size must be divisible by --patch")
    c0 = args.channels * args.patch * args.patch
    side = args.size // args.patch
    layers, c_in = [], c0
    for c in args.hidden:
        layers.append((c_in, c))
        c_in = c
    return c0, side, layers


def conv_flops(args):
    """(forward, backward) convolution FLOPs of one batch (see the module docstring)."""
    c0, side, layers = geometry(args)
    k, hw, samples = args.kernel, side * side, args.batch * (args.frames - 1)
    conv = lambda c_out, c_in, kk: 2 * c_out * c_in * kk * kk * hw  # noqa: E731
    fwd = bwd = 0
    for layer, (c_in, c) in enumerate(layers):
        x_part, h_part = conv(GATES * c, c_in, k), conv(GATES * c, c, k)
        fwd += x_part + h_part
        bwd += (1 if layer == 0 else 2) * x_part + 2 * h_part
    head = conv(c0, layers[-1][1], 1)
    fwd += head
    bwd += 2 * head
    return fwd * samples, bwd * samples


# ----------------------------------------------------------------------------------------
# Models. Each maps the patched inputs xs [T, B, C0, S, S] to patched predictions of the same
# shape, and reads/writes its weights through the canonical names.


def canonical_shapes(args):
    c0, side, layers = geometry(args)
    k = args.kernel
    shapes = []
    for n, (c_in, c) in enumerate(layers):
        shapes += [
            (f"convlstm.weight_ih_l{n}", (GATES * c, c_in, k, k)),
            (f"convlstm.weight_hh_l{n}", (GATES * c, c, k, k)),
            (f"convlstm.bias_ih_l{n}", (GATES * c,)),
            (f"convlstm.bias_hh_l{n}", (GATES * c,)),
        ]
        if args.peephole:
            shapes += [(f"convlstm.weight_c{g}_l{n}", (c, side, side)) for g in "ifo"]
    shapes += [("head.weight", (c0, layers[-1][1], 1, 1)), ("head.bias", (c0,))]
    return shapes


def canonical_state(args, seed):
    """Weights ~ Normal(0, 1/fan_in); biases and peepholes ~ Normal(0, 0.1) (non-zero, so the
    check sees them), from one seeded generator, in canonical order."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in canonical_shapes(args):
        std = (1.0 / (shape[1] * shape[2] * shape[3])) ** 0.5 if len(shape) == 4 else 0.1
        state[name] = torch.randn(shape, generator=gen) * std
    return state


def lstm_gates(pre, c, peep):
    """One LSTM update from pre-activations stacked i, f, g, o; peep = (w_ci, w_cf, w_co) or None."""
    i, f, g, o = pre.chunk(GATES, dim=1)
    if peep is not None:
        i = i + peep[0] * c
        f = f + peep[1] * c
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    if peep is not None:
        o = o + peep[2] * c
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


class Layer(nn.Module):
    def __init__(self, c, side, peephole):
        super().__init__()
        self.c = c
        if peephole:
            self.w_ci, self.w_cf, self.w_co = (nn.Parameter(torch.zeros(c, side, side)) for _ in range(3))
        self.peephole = peephole

    def peep(self):
        return (self.w_ci, self.w_cf, self.w_co) if self.peephole else None

    def load_peep(self, state, n):
        if self.peephole:
            for g in "ifo":
                getattr(self, f"w_c{g}").copy_(state[f"convlstm.weight_c{g}_l{n}"])

    def peep_grads(self, n):
        return {f"convlstm.weight_c{g}_l{n}": getattr(self, f"w_c{g}").grad for g in "ifo"} if self.peephole else {}


class FusedLayer(Layer):
    def __init__(self, c_in, c, k, side, peephole):
        super().__init__(c, side, peephole)
        self.c_in = c_in
        self.conv = nn.Conv2d(c_in + c, GATES * c, k, padding=k // 2)

    def step(self, x, h, c):
        return lstm_gates(self.conv(torch.cat([x, h], 1)), c, self.peep())

    @torch.no_grad()
    def load(self, state, n):
        w = torch.cat([state[f"convlstm.weight_ih_l{n}"], state[f"convlstm.weight_hh_l{n}"]], 1)
        self.conv.weight.copy_(w)
        self.conv.bias.copy_(state[f"convlstm.bias_ih_l{n}"] + state[f"convlstm.bias_hh_l{n}"])
        self.load_peep(state, n)

    def grads(self, n):
        gw, gb = self.conv.weight.grad, self.conv.bias.grad
        return {
            f"convlstm.weight_ih_l{n}": gw[:, : self.c_in],
            f"convlstm.weight_hh_l{n}": gw[:, self.c_in :],
            f"convlstm.bias_ih_l{n}": gb,
            f"convlstm.bias_hh_l{n}": gb,
            **self.peep_grads(n),
        }


class SeparateLayer(Layer):
    def __init__(self, c_in, c, k, side, peephole):
        super().__init__(c, side, peephole)
        self.conv_x = nn.Conv2d(c_in, GATES * c, k, padding=k // 2)
        self.conv_h = nn.Conv2d(c, GATES * c, k, padding=k // 2, bias=True)

    def step(self, x, h, c):
        return lstm_gates(self.conv_x(x) + self.conv_h(h), c, self.peep())

    def step_pre(self, pre_x, h, c):
        """A step whose input half of the pre-activations is already computed."""
        return lstm_gates(pre_x + self.conv_h(h), c, self.peep())

    @torch.no_grad()
    def load(self, state, n):
        self.conv_x.weight.copy_(state[f"convlstm.weight_ih_l{n}"])
        self.conv_h.weight.copy_(state[f"convlstm.weight_hh_l{n}"])
        self.conv_x.bias.copy_(state[f"convlstm.bias_ih_l{n}"])
        self.conv_h.bias.copy_(state[f"convlstm.bias_hh_l{n}"])
        self.load_peep(state, n)

    def grads(self, n):
        return {
            f"convlstm.weight_ih_l{n}": self.conv_x.weight.grad,
            f"convlstm.weight_hh_l{n}": self.conv_h.weight.grad,
            f"convlstm.bias_ih_l{n}": self.conv_x.bias.grad,
            f"convlstm.bias_hh_l{n}": self.conv_h.bias.grad,
            **self.peep_grads(n),
        }


class Model(nn.Module):
    layer_class = None

    def __init__(self, args, memory_format=torch.contiguous_format):
        super().__init__()
        c0, side, layers = geometry(args)
        k = args.kernel
        self.layers = nn.ModuleList(self.layer_class(c_in, c, k, side, args.peephole) for c_in, c in layers)
        self.head = nn.Conv2d(layers[-1][1], c0, 1)
        self.memory_format = memory_format

    def zeros(self, xs, c):
        T, B, _, H, W = xs.shape
        return xs.new_zeros(B, c, H, W).contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def load_canonical(self, state):
        for n, layer in enumerate(self.layers):
            layer.load(state, n)
        self.head.weight.copy_(state["head.weight"])
        self.head.bias.copy_(state["head.bias"])

    def canonical_grads(self):
        grads = {}
        for n, layer in enumerate(self.layers):
            grads.update(layer.grads(n))
        grads["head.weight"], grads["head.bias"] = self.head.weight.grad, self.head.bias.grad
        return grads


class StepwiseModel(Model):
    """fused and separate: every convolution inside the time loop."""

    def forward(self, xs):  # [T, B, C0, S, S]
        state = [(self.zeros(xs, l.c), self.zeros(xs, l.c)) for l in self.layers]
        preds = []
        for t in range(xs.shape[0]):
            inp = xs[t]
            for n, layer in enumerate(self.layers):
                h, c = layer.step(inp, *state[n])
                state[n] = (h, c)
                inp = h
            preds.append(torch.sigmoid(self.head(inp)))
        return torch.stack(preds)


class Fused(StepwiseModel):
    layer_class = FusedLayer


class Separate(StepwiseModel):
    layer_class = SeparateLayer


class SeparateFolded(Model):
    """Layer by layer: the input convolution of all steps at once, then the recurrence."""

    layer_class = SeparateLayer

    def forward(self, xs):  # [T, B, C0, S, S]
        T, B = xs.shape[:2]
        fold = lambda y: y.reshape(T * B, *y.shape[2:]).contiguous(memory_format=self.memory_format)  # noqa: E731
        seq = xs
        for layer in self.layers:
            pre_x = layer.conv_x(fold(seq))  # [T*B, 4C, S, S]
            # unbind, not pre_x[t]: the backward of T indexing ops would build T zero-filled
            # copies of the whole [T*B, 4C, S, S] gradient (a third of the batch's time).
            pre_x = pre_x.view(T, B, *pre_x.shape[1:]).unbind(0)
            h, c = self.zeros(xs, layer.c), self.zeros(xs, layer.c)
            hs = []
            for t in range(T):
                h, c = layer.step_pre(pre_x[t], h, c)
                hs.append(h)
            seq = torch.stack(hs)  # [T, B, C, S, S]
        out = torch.sigmoid(self.head(fold(seq)))
        return out.view(T, B, *out.shape[1:])


MODELS = {"fused": Fused, "separate": Separate, "separate-folded": SeparateFolded}


def build(args, variant, channels_last, state):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = MODELS[variant](args, fmt)
    model.load_canonical(state)
    return model.to(memory_format=fmt)


def batch_loss(model, window, patch):
    """The loss of a batch window [B, L, C, H, W]: encode, run, decode, sum of per-step MSE,
    mean over windows."""
    B, L = window.shape[:2]
    T = L - 1
    frames = window[:, :-1].transpose(0, 1).reshape(T * B, *window.shape[2:])  # step-major
    xs = F.pixel_unshuffle(frames, patch).contiguous(memory_format=model.memory_format)
    xs = xs.view(T, B, *xs.shape[1:])
    pred = F.pixel_shuffle(model(xs).flatten(0, 1), patch).view(T, B, *window.shape[2:])
    target = window[:, 1:].transpose(0, 1)  # [T, B, C, H, W]
    per_step = (pred - target).pow(2).flatten(2).mean(2)  # [T, B]
    return per_step.sum(0).mean()


def draw_window(args, seed):
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.rand(args.batch, args.frames, args.channels, args.size, args.size, generator=gen)


# ----------------------------------------------------------------------------------------
# One configuration (in this process)


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_one(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build(args, args.variant, args.channels_last, canonical_state(args, args.seed))
    window = draw_window(args, args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    base_mb = max_rss_mb()
    warmup_times, times, losses = [], [], []
    for i in range(args.warmup + args.batches):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = batch_loss(model, window, args.patch)
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        losses.append(loss.item())
        (times if i >= args.warmup else warmup_times).append(elapsed)
    return {
        "variant": args.variant,
        "memory_format": "channels_last" if args.channels_last else "contiguous",
        "threads": args.threads,
        "times": times,
        "warmup_times": warmup_times,
        "losses": losses,
        "base_mb": base_mb,
        "peak_mb": max_rss_mb(),
        "load": os.getloadavg()[0],  # 1-minute load average at the end (the machine may be shared)
    }


# ----------------------------------------------------------------------------------------
# Driver: every configuration in its own subprocess


def child_command(args, variant, fmt, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--variant", variant, "--threads", str(threads)]
    cmd += ["--warmup", str(args.warmup), "--batches", str(args.batches), "--seed", str(args.seed)]
    cmd += ["--batch", str(args.batch), "--frames", str(args.frames), "--size", str(args.size)]
    cmd += ["--channels", str(args.channels), "--patch", str(args.patch), "--kernel", str(args.kernel)]
    cmd += ["--hidden", *map(str, args.hidden)]
    if fmt == "channels_last":
        cmd.append("--channels-last")
    if args.peephole:
        cmd.append("--peephole")
    if args.no_mkldnn:
        cmd.append("--no-mkldnn")
    return cmd


def run_child(cmd, threads):
    """Run one configuration; its JSON result and its peak RSS (MiB) from os.wait4."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def row(result, flops, peephole, round_):
    t = result["times"]
    med = statistics.median(t)
    return {
        "variant": result["variant"],
        "memory_format": result["memory_format"],
        "threads": result["threads"],
        "peephole": int(peephole),
        "round": round_,
        "median_s": med,
        "min_s": min(t),
        "max_s": max(t),
        "warmup_s": " ".join(f"{w:.3f}" for w in result["warmup_times"]),
        "peak_mb": result["peak_mb"],
        "base_mb": result["base_mb"],
        "gflop_per_batch": flops / 1e9,
        "gflop_per_s": flops / med / 1e9,
        "load": result["load"],
    }


def line(r):
    return (
        f"{r['variant']:16} {r['memory_format']:13} {r['threads']} thr  round {r['round']!s:3}  "
        f"{r['median_s']:7.3f} s/batch  (min {r['min_s']:.3f}, max {r['max_s']:.3f})  "
        f"peak {r['peak_mb']:6.0f} MiB (base {r['base_mb']:4.0f})  {r['gflop_per_s']:6.1f} GFLOP/s"
        + f"  load {r['load']:.1f}"
        + (f"  [warm-up {r['warmup_s']}]" if r["warmup_s"] and r["round"] != "all" else "")
    )


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def header(args, flops):
    fwd, bwd = flops
    print(
        f"torch {torch.__version__}; CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"oneDNN (mkldnn) available {torch.backends.mkldnn.is_available()}, "
        f"{'disabled (--no-mkldnn)' if args.no_mkldnn else 'enabled'}"
    )
    _, side, layers = geometry(args)
    print(
        f"batch {args.batch} x {args.frames} frames {args.channels}x{args.size}x{args.size}, patch {args.patch} "
        f"-> {layers[0][0]}x{side}x{side}; layers {[c for _, c in layers]}, kernel {args.kernel}, "
        f"peephole {args.peephole}; warm-up {args.warmup}, timed {args.batches}"
    )
    print(
        f"convolution FLOPs per batch: {fwd + bwd:,} ({(fwd + bwd) / 1e9:.3f} G; "
        f"forward {fwd / 1e9:.3f} G, backward {bwd / 1e9:.3f} G)",
        flush=True,
    )


def drive(args):
    fwd, bwd = conv_flops(args)
    header(args, (fwd, bwd))
    configs = [(v, f, n) for v in args.variants for f in args.formats for n in args.thread_list]
    rows, pooled = [], {}
    for round_ in range(1, args.rounds + 1):
        for variant, fmt, threads in configs:
            result = run_child(child_command(args, variant, fmt, threads), threads)
            r = row(result, fwd + bwd, args.peephole, round_)
            rows.append(r)
            print(line(r), flush=True)
            acc = pooled.setdefault((variant, fmt, threads), dict(result, times=[], warmup_times=[], peak_mb=0, base_mb=0))
            acc["times"] += result["times"]
            acc["warmup_times"] += result["warmup_times"]
            acc["peak_mb"] = max(acc["peak_mb"], result["peak_mb"])
            acc["base_mb"] = max(acc["base_mb"], result["base_mb"])
            acc["load"] = max(acc["load"], result["load"])
    if args.rounds > 1:
        print(f"summary over {args.rounds} rounds ({args.rounds * args.batches} timed batches each):")
        summary = [row(acc, fwd + bwd, args.peephole, "all") for acc in pooled.values()]
        for r in summary:
            print(line(r))
        rows += summary
    else:
        summary = rows
    best = min(summary, key=lambda r: (r["median_s"]))
    print(f"fastest: {best['variant']} {best['memory_format']} {best['threads']} thread(s), {best['median_s']:.3f} s/batch")
    for n in args.thread_list:
        b = min((r for r in summary if r["threads"] == n), key=lambda r: r["median_s"])
        print(f"fastest at {n} thread(s): {b['variant']} {b['memory_format']}, {b['median_s']:.3f} s/batch")
    if args.csv:
        write_csv(args.csv, rows)


# ----------------------------------------------------------------------------------------
# Check: every variant and memory format, same weights, same loss and gradients


def against_general(args, state, window, ref):
    """The float32 reference against bench/torch_general.py's float64 model (the contract the
    Rust fixtures come from), same weights and window; skipped if that file does not import."""
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import torch_general as general
    except ImportError as e:
        print(f"  torch_general.py cross-check skipped ({e})")
        return True
    head = "conv1x1-sigmoid"
    cfg = general.make_config(
        "conv", args.channels, args.size, args.size, args.hidden, [args.kernel] * len(args.hidden),
        args.peephole, head, args.patch, args.batch, args.frames,
    )
    params = {n: t.double() for n, t in state.items()}
    assert list(params) == [n for n, _ in general.param_shapes(cfg)], "canonical names differ from torch_general's"
    _, loss, grads = general.loss_and_grads(cfg, params, window.double())
    rel_loss = abs(ref[0] - loss.item()) / abs(loss.item())
    rel_grad = max((ref[1][n].double() - g).abs().max().item() / g.abs().max().item() for n, g in grads.items())
    good = rel_loss <= 1e-5 and rel_grad <= 1e-4
    print(
        f"peephole {args.peephole!s:5}: torch_general.py (float64) loss {loss.item()!r}: fused float32 rel diff "
        f"{rel_loss:.1e}; grads {rel_grad:.1e}  {'ok' if good else 'FAIL'}"
    )
    return good


def check(args):
    torch.set_num_threads(args.threads)
    ok = True
    for peephole in (False, True):
        a = argparse.Namespace(**dict(vars(args), peephole=peephole))
        state = canonical_state(a, args.seed)
        window = draw_window(a, args.seed)
        ref = None
        for variant in VARIANTS:
            for fmt in FORMATS:
                model = build(a, variant, fmt == "channels_last", state)
                loss = batch_loss(model, window, a.patch)
                loss.backward()
                grads = model.canonical_grads()
                if ref is None:
                    ref = (loss.item(), grads)
                    print(f"peephole {peephole!s:5}: reference fused contiguous, loss {loss.item()!r}")
                    continue
                rel_loss = abs(loss.item() - ref[0]) / abs(ref[0])
                rel_grad = max((g - ref[1][n]).abs().max().item() / ref[1][n].abs().max().item() for n, g in grads.items())
                good = rel_loss <= 1e-5 and rel_grad <= 1e-4
                ok &= good
                print(
                    f"peephole {peephole!s:5}: {variant:16} {fmt:13} loss {loss.item()!r}: rel diff {rel_loss:.1e}; "
                    f"grads: max |diff| / max |ref| over tensors {rel_grad:.1e}  {'ok' if good else 'FAIL'}"
                )
        ok &= against_general(a, state, window, ref)
    print("check (loss to 1e-5 relative, grads to 1e-4 of each tensor's max)", "passed" if ok else "FAILED")
    assert ok, "variants disagree"


# ----------------------------------------------------------------------------------------
# Main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", choices=VARIANTS, help="time this one configuration in this process")
    p.add_argument("--channels-last", action="store_true", help="with --variant: torch.channels_last")
    p.add_argument("--threads", type=int, default=1, help="with --variant or --check (default 1)")
    p.add_argument("--check", action="store_true", help="assert that all variants agree, then exit")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS, help="driver: variants")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=FORMATS, help="driver: memory formats")
    p.add_argument("--thread-list", nargs="+", type=int, default=[1, 2], help="driver: thread counts")
    p.add_argument("--rounds", type=int, default=1, help="driver: times to run the whole matrix")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first (default 2)")
    p.add_argument("--batches", type=int, default=5, help="timed batches (default 5)")
    p.add_argument("--batch", type=int, default=16, help="windows per batch")
    p.add_argument("--frames", type=int, default=20, help="frames per window (steps + 1)")
    p.add_argument("--size", type=int, default=64, help="frame side")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="channels per layer")
    p.add_argument("--kernel", type=int, default=5, help="odd kernel side (all layers)")
    p.add_argument("--peephole", action="store_true")
    p.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", metavar="FILE", help="write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # driver's subprocess: JSON out
    args = p.parse_args(argv)
    if args.kernel % 2 == 0:
        p.error("--kernel must be odd")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    if args.check:
        check(args)
    elif args.child:
        print(json.dumps(time_one(args)))
    elif args.variant:
        flops = conv_flops(args)
        header(args, flops)
        r = row(time_one(args), sum(flops), args.peephole, 1)
        print(line(r))
        if args.csv:
            write_csv(args.csv, [r])
    else:
        drive(args)


if __name__ == "__main__":
    main()
