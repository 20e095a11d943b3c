"""PyTorch CPU timing of one training batch of PredRNN, to set against bench-cli's
`--model predrnn` of the same shape on the same machine (bench/side_by_side_predrnn.sh runs
both, alternating).

    /work/torch-venv/bin/python bench/torch_predrnn_speed.py --threads 2 --warmup 1 --batches 5

What is timed (float32, CPU): optimizer.zero_grad, the forward over the window (patching
included), the loss, backward through time and one torch.optim.Adam(lr=1e-3) step, on
random frames drawn once before timing.

- Frames 64x64, 1 channel, cut into 4x4 patches by F.pixel_unshuffle: 16 channels of 16x16.
  A batch of 16 windows of 20 frames: 19 steps, step t reads frame t and predicts t+1.
- Two spatiotemporal LSTM layers of 32 channels, 5x5 kernels, as OpenSTL's
  SpatioTemporalLSTMCell without layer normalisation and bench/torch_predrnn.py's equations:
  nn.Conv2d modules conv_x (C_in -> 7C, with a bias), conv_h (C -> 4C), conv_m (C -> 3C),
  conv_o (2C -> C), conv_last (2C -> C, 1x1), none of those four with a bias; forget bias 1;
  M zigzags (layer k reads layer k-1's M of the step, layer 0 the top layer's of the step
  before).
- Head: a 1x1 convolution 32 -> 16 with a bias, a sigmoid, F.pixel_shuffle back to 64x64.
- Loss: per step and window the mean squared error over the 4096 pixels, summed over the 19
  steps, mean over the 16 windows (what bench-cli trains one step ahead).

Output: the median seconds per batch over --batches timed batches after --warmup untimed
ones, min - max, and the peak resident memory of this process.
"""

import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

FORGET_BIAS = 1.0


class StLstm(nn.Module):
    def __init__(self, c_in, c, k):
        super().__init__()
        pad = k // 2
        self.c = c
        self.conv_x = nn.Conv2d(c_in, 7 * c, k, padding=pad)
        self.conv_h = nn.Conv2d(c, 4 * c, k, padding=pad, bias=False)
        self.conv_m = nn.Conv2d(c, 3 * c, k, padding=pad, bias=False)
        self.conv_o = nn.Conv2d(2 * c, c, k, padding=pad, bias=False)
        self.conv_last = nn.Conv2d(2 * c, c, 1, bias=False)

    def forward(self, x, h, c, m):
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = self.conv_x(x).split(self.c, 1)
        i_h, f_h, g_h, o_h = self.conv_h(h).split(self.c, 1)
        i_m, f_m, g_m = self.conv_m(m).split(self.c, 1)
        c = torch.sigmoid(f_x + f_h + FORGET_BIAS) * c + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        m = torch.sigmoid(f_xm + f_m + FORGET_BIAS) * m + torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
        mem = torch.cat([c, m], 1)
        o = torch.sigmoid(o_x + o_h + self.conv_o(mem))
        return o * torch.tanh(self.conv_last(mem)), c, m


class PredRnn(nn.Module):
    def __init__(self, args):
        super().__init__()
        c0 = args.channels * args.patch * args.patch
        self.patch, self.hidden = args.patch, args.hidden
        ins = [c0] + [args.hidden] * (args.layers - 1)
        self.cell_list = nn.ModuleList(StLstm(c_in, args.hidden, args.kernel) for c_in in ins)
        self.head = nn.Conv2d(args.hidden, c0, 1)

    def forward(self, frames):  # [B, L, C, H, W] -> predictions of frames 1 .. L-1
        b, length = frames.shape[:2]
        x0 = F.pixel_unshuffle(frames[:, 0], self.patch)
        zero = x0.new_zeros(b, self.hidden, *x0.shape[2:])
        hs, cs, m = [zero] * len(self.cell_list), [zero] * len(self.cell_list), zero
        preds = []
        for t in range(length - 1):
            inp = F.pixel_unshuffle(frames[:, t], self.patch)
            for k, cell in enumerate(self.cell_list):
                hs[k], cs[k], m = cell(inp, hs[k], cs[k], m)
                inp = hs[k]
            preds.append(F.pixel_shuffle(torch.sigmoid(self.head(inp)), self.patch))
        return torch.stack(preds, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = PredRnn(args)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    frames = torch.rand(args.batch, args.frames, args.channels, args.size, args.size)
    times = []
    for n in range(args.warmup + args.batches):
        start = time.perf_counter()
        opt.zero_grad()
        pred = model(frames)
        loss = (pred - frames[:, 1:]).pow(2).flatten(2).mean(2).sum(1).mean()
        loss.backward()
        opt.step()
        if n >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"pytorch predrnn {args.layers}x{args.hidden} threads {args.threads}: "
        f"{statistics.median(times):.3f} s/batch median ({min(times):.3f} - {max(times):.3f}), "
        f"peak {peak:.0f} MiB, torch {torch.__version__}"
    )


if __name__ == "__main__":
    main()
