"""Independent PyTorch reference (float64) for stacks that are not plain, the fixtures
crates/harness/tests/wiring.rs reads:

- top-down: two fully connected LSTM layers where the bottom layer at step t also reads
  the top layer's h of step t-1 (a state flowing from the top of one step to the bottom of
  the next), the output layer reading both layers' h;
- encoder-forecaster (Shi et al. 2015): an encoder of two layers reads the context's frames
  but the last; a forecaster of two layers of the same sizes starts from the encoder's h
  and c layer by layer, reads the last context frame and then its own predictions; the
  output layer reads both forecaster layers' h. Steps before the forecaster's first
  predict from zero states (they count for nothing).

    python bench/torch_wiring.py top-down crates/harness/tests/fixtures/wiring/top_down.safetensors
    python bench/torch_wiring.py encoder-forecaster crates/harness/tests/fixtures/wiring/encoder_forecaster.safetensors

The contract (float64; gates stacked i, f, g, o as in nn.LSTM):
- Frames [C, H, W] = [1, 3, 4], flattened to D = 12 values. A batch of B = 2 windows of
  L = 5 frames, `window` [L, B, C, H, W] (time-major).
- Layer k: pre = x W_ih^T + b_ih + h_prev W_hh^T + b_hh; i, f, o = sigmoid, g = tanh;
  c = f c_prev + i g; h = o tanh(c); h, c start at zero.
- top-down (hidden 5, 4): layer 0 reads cat(x_t, h1_{t-1}) (D + N_1 = 16 values), layer 1
  reads h0_t; y_t = cat(h0_t, h1_t) W^T + b, W [D, 9].
- encoder-forecaster (hidden 5, 4, 5, 4): layers 0, 1 the encoder, 2, 3 the forecaster
  (layer 2 reads x, layer 3 reads h2); y_t = cat(h2_t, h3_t) W^T + b, W [D, 9].
- A forecast of 2 frames after 3: steps t = 0 .. 3; steps 0 .. 2 read frame t, step 3
  reads y_2; the loss is the mean over the last 2 steps and the B windows of the per-frame
  mean squared error against frame t + 1.
- Parameters layers.{k}.weight_ih, layers.{k}.weight_hh, layers.{k}.bias_ih,
  layers.{k}.bias_hh, head.weight, head.bias ~ N(0, 0.5^2) from torch.manual_seed(0); the
  window ~ U(0, 1). Saved with each gradient as grad.<name> and the loss as `loss` [1].
"""

import sys

import torch
from safetensors.torch import save_file

D, B, L, CONTEXT, HORIZON = 12, 2, 5, 3, 2
HIDDEN = {"top-down": [5, 4], "encoder-forecaster": [5, 4, 5, 4]}


def parameters(case):
    hidden = HIDDEN[case]
    g = torch.Generator().manual_seed(0)
    draw = lambda *shape: (0.5 * torch.randn(*shape, generator=g, dtype=torch.float64))
    inputs = {"top-down": [D + 4, 5], "encoder-forecaster": [D, 5, D, 5]}[case]
    params = {}
    for k, n in enumerate(hidden):
        params[f"layers.{k}.weight_ih"] = draw(4 * n, inputs[k])
        params[f"layers.{k}.weight_hh"] = draw(4 * n, n)
        params[f"layers.{k}.bias_ih"] = draw(4 * n)
        params[f"layers.{k}.bias_hh"] = draw(4 * n)
    params["head.weight"] = draw(D, 9)
    params["head.bias"] = draw(D)
    window = torch.rand(L, B, 1, 3, 4, generator=g, dtype=torch.float64)
    return params, window


def cell(p, k, x, h, c):
    pre = x @ p[f"layers.{k}.weight_ih"].T + p[f"layers.{k}.bias_ih"]
    pre = pre + h @ p[f"layers.{k}.weight_hh"].T + p[f"layers.{k}.bias_hh"]
    i, f, g, o = pre.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def loss_of(case, p, window):
    frames = window.reshape(L, B, D)
    hs = [torch.zeros(B, n, dtype=torch.float64) for n in HIDDEN[case]]
    cs = [torch.zeros(B, n, dtype=torch.float64) for n in HIDDEN[case]]
    steps = CONTEXT + HORIZON - 1
    losses, y = [], None
    for t in range(steps):
        x = frames[t] if t < CONTEXT else y
        if case == "top-down":
            hs[0], cs[0] = cell(p, 0, torch.cat([x, hs[1]], dim=1), hs[0], cs[0])
            hs[1], cs[1] = cell(p, 1, hs[0], hs[1], cs[1])
            y = torch.cat(hs, dim=1) @ p["head.weight"].T + p["head.bias"]
        elif t + 1 < CONTEXT:
            hs[0], cs[0] = cell(p, 0, x, hs[0], cs[0])
            hs[1], cs[1] = cell(p, 1, hs[0], hs[1], cs[1])
            y = torch.cat(hs[2:], dim=1) @ p["head.weight"].T + p["head.bias"]
        else:
            if t + 1 == CONTEXT:
                hs[2], cs[2], hs[3], cs[3] = hs[0], cs[0], hs[1], cs[1]
            hs[2], cs[2] = cell(p, 2, x, hs[2], cs[2])
            hs[3], cs[3] = cell(p, 3, hs[2], hs[3], cs[3])
            y = torch.cat(hs[2:], dim=1) @ p["head.weight"].T + p["head.bias"]
        if t >= steps - HORIZON:
            losses.append(((y - frames[t + 1]) ** 2).mean(dim=1).sum())
    return sum(losses) / (HORIZON * B)


def main(case, out):
    params, window = parameters(case)
    for t in params.values():
        t.requires_grad_(True)
    loss = loss_of(case, params, window)
    loss.backward()
    tensors = {name: t.detach() for name, t in params.items()}
    tensors.update({f"grad.{name}": t.grad for name, t in params.items()})
    tensors["window"] = window
    tensors["loss"] = loss.detach().reshape(1)
    save_file({k: v.contiguous() for k, v in tensors.items()}, out)
    print(f"{case}: loss {loss.item():.17g}; wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
