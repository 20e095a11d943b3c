"""Independent PyTorch reference (float64) for PredRNN (Wang et al., NeurIPS 2017), written
from the paper's equations for the tests of crates/predrnn, on the contract of
bench/torch_general.py (windows, patches, heads, one-step and forecast plans, scheduled
sampling, the squared error and the cross-entropy; fixtures of the same layout).

Regenerate the fixtures (from the repository root; the files are deterministic):

    ATEN_CPU_CAPABILITY=avx2 /work/torch-venv/bin/python bench/torch_predrnn.py \
        --all-fixtures crates/predrnn/tests/fixtures
    /work/torch-venv/bin/python bench/torch_predrnn.py --self-check

The model, every tensor float64, `*` a convolution of stride 1 and padding K // 2, the
layers' hidden channels C all equal:

- State: every layer's H and C, and one spatiotemporal memory M, all zero before step 0.
- Layer k at a step reads X (the patched frame for k = 0, layer k-1's new H above it), its
  own H and C of the step before, and M: from layer k-1 of this step, or for k = 0 from the
  top layer of the step before (the zigzag).
- Gates (blocks of C channels, in this order):
  [i, f, g, i', f', g', o]_x = W_x * X + b_x     (cell_list.k.conv_x.{weight,bias})
  [i, f, g, o]_h = W_h * H                        (cell_list.k.conv_h.weight, no bias)
  [i', f', g']_m = W_m * M                        (cell_list.k.conv_m.weight, no bias)
  i = sigmoid(i_x + i_h), f = sigmoid(f_x + f_h + 1), g = tanh(g_x + g_h),
  C_new = f C + i g;
  i' = sigmoid(i'_x + i'_m), f' = sigmoid(f'_x + f'_m + 1), g' = tanh(g'_x + g'_m),
  M_new = f' M + i' g';
  o = sigmoid(o_x + o_h + W_o * [C_new, M_new])   (cell_list.k.conv_o.weight, no bias)
  H_new = o tanh(W_1x1 * [C_new, M_new])          (cell_list.k.conv_last.weight, 1x1, no bias)
  The forget bias 1 is OpenSTL's; the rest is the paper's equation (3).
- The head reads the top layer's H: bench/torch_general.py's conv heads.

Parameters are drawn as torch_general draws them: one torch.Generator seeded with the
case's seed (3000 + i for case i), first the window, then every parameter in the order
listed above (per layer conv_x weight, bias, conv_h, conv_m, conv_o, conv_last; then the
head), each ~ Normal(0, 0.5).
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_general as tg  # noqa: E402

FORGET_BIAS = 1.0


def predrnn_shapes(cfg):
    """(name, shape) of every parameter, in the listed (and drawing) order."""
    C, P = cfg["channels"], cfg["patch"]
    c_in, shapes = C * P * P, []
    for k, (ck, kk) in enumerate(zip(cfg["hidden"], cfg["kernel"])):
        shapes += [
            (f"cell_list.{k}.conv_x.weight", (7 * ck, c_in, kk, kk)),
            (f"cell_list.{k}.conv_x.bias", (7 * ck,)),
            (f"cell_list.{k}.conv_h.weight", (4 * ck, ck, kk, kk)),
            (f"cell_list.{k}.conv_m.weight", (3 * ck, ck, kk, kk)),
            (f"cell_list.{k}.conv_o.weight", (ck, 2 * ck, kk, kk)),
            (f"cell_list.{k}.conv_last.weight", (ck, 2 * ck, 1, 1)),
        ]
        c_in = ck
    if cfg["head"] != "none":
        shapes += [("head.weight", (C * P * P, c_in, 1, 1)), ("head.bias", (C * P * P,))]
    return shapes


def st_lstm(params, k, kernel, x, h, c, m):
    """One spatiotemporal LSTM layer: (H_new, C_new, M_new)."""
    pad = kernel // 2
    name = f"cell_list.{k}"
    ck = h.shape[1]
    i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = F.conv2d(
        x, params[f"{name}.conv_x.weight"], params[f"{name}.conv_x.bias"], padding=pad
    ).split(ck, dim=1)
    i_h, f_h, g_h, o_h = F.conv2d(h, params[f"{name}.conv_h.weight"], padding=pad).split(ck, dim=1)
    i_m, f_m, g_m = F.conv2d(m, params[f"{name}.conv_m.weight"], padding=pad).split(ck, dim=1)
    c_new = torch.sigmoid(f_x + f_h + FORGET_BIAS) * c + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
    m_new = torch.sigmoid(f_xm + f_m + FORGET_BIAS) * m + torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
    memory = torch.cat([c_new, m_new], dim=1)
    o = torch.sigmoid(o_x + o_h + F.conv2d(memory, params[f"{name}.conv_o.weight"], padding=pad))
    h_new = o * torch.tanh(F.conv2d(memory, params[f"{name}.conv_last.weight"]))
    return h_new, c_new, m_new


def predrnn_step(cfg, params, x, state):
    """One step of every layer on a patched frame x: (prediction, logits or None, state)."""
    layers = len(cfg["hidden"])
    if state is None:
        zero = x.new_zeros(x.shape[0], cfg["hidden"][0], x.shape[2], x.shape[3])
        state = ([zero] * layers, [zero] * layers, zero)
    hs, cs, m = state
    new_h, new_c, inp = [], [], x
    for k in range(layers):
        h, c, m = st_lstm(params, k, cfg["kernel"][k], inp, hs[k], cs[k], m)
        new_h.append(h)
        new_c.append(c)
        inp = h
    y, z = tg.conv_head(cfg, params, new_h[-1], x)
    return y, z, (new_h, new_c, m)


tg.MODELS["predrnn"] = (predrnn_step, predrnn_shapes)


def make_config(**kwargs):
    cfg = tg.make_config("conv", **kwargs)
    if len(set(cfg["hidden"])) != 1 or len(set(cfg["kernel"])) != 1:
        raise ValueError("PredRNN's layers share their channels and kernel side")
    cfg["model"] = "predrnn"
    return cfg


CASES = [
    ("one-layer", dict(height=7, width=6, hidden=[1], kernel=[3], head="none", batch=1, seq_len=5)),
    ("two-layers", dict(height=8, width=8, hidden=[3, 3], kernel=[3], head="conv1x1", batch=2, seq_len=5)),
    ("rgb-patch", dict(channels=3, height=6, width=4, patch=2, hidden=[4, 4], kernel=[3], head="conv1x1", batch=2, seq_len=4)),
    ("residual-forecast", dict(height=8, width=8, patch=2, hidden=[3], kernel=[5], head="residual", batch=2, context=2, horizon=3)),
    ("bce-forecast", dict(height=8, width=8, patch=2, hidden=[3, 3, 3], kernel=[3], head="conv1x1-sigmoid", batch=2, context=3, horizon=3, loss="bce")),
    ("sampled-forecast", dict(height=8, width=8, patch=2, hidden=[3, 3], kernel=[3], head="conv1x1-sigmoid", batch=4, context=2, horizon=3, sampling=(0.5, 11))),
]
SEED_BASE = 3000


def self_check(entries=4):
    """Central differences against PyTorch's autograd on every case."""
    worst = 0.0
    for i, (name, kwargs) in enumerate(CASES):
        cfg = make_config(**kwargs)
        rows = tg.finite_differences(cfg, SEED_BASE + i, per_param=entries)
        for pname, index, auto, fd in rows:
            err = abs(auto - fd) / max(1.0, abs(fd))
            worst = max(worst, err)
            if err > 1e-6:
                print(f"{name} {pname}[{index}]: autograd {auto} finite difference {fd}")
                return 1
    print(f"self-check: autograd and central differences agree on every case (worst {worst:.2e})")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--all-fixtures", metavar="DIR", help="write every case")
    p.add_argument("--self-check", action="store_true")
    args = p.parse_args(argv)
    if args.self_check:
        return self_check()
    if not args.all_fixtures:
        p.error("give --all-fixtures DIR or --self-check")
    for i, (name, kwargs) in enumerate(CASES):
        loss = tg.write_fixture(make_config(**kwargs), SEED_BASE + i, Path(args.all_fixtures) / f"{name}.safetensors")
        print(f"{name}: loss {loss!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
