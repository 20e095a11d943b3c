"""PyTorch CPU timing of one training batch of Shi et al.'s FC-LSTM (two fully connected LSTM
layers of 2048 units over flattened 64x64 frames, an output layer back to the frame), to set
against `bench-cli bench --configs fc-2048x2` on the same machine.

Install (CPU use is enough): python3 -m venv .venv && .venv/bin/pip install torch

    .venv/bin/python bench/torch_fc_lstm.py --threads 2 --warmup 1 --batches 3

What is timed (float32, CPU), the same batch bench-cli's fc-2048x2 trains: 16 windows of 20
frames of 64x64 (values uniform in [0, 1], drawn once); step t reads frame t (flattened to
4096 values) and predicts frame t+1, h and c starting at zero; the model is PyTorch's own
fused `nn.LSTM(4096, 2048, num_layers=2)` (its fastest CPU LSTM: one call runs every step of
both layers) and `nn.Linear(2048, 4096)`; the loss is, per step and window, the mean over the
4096 values of the squared error, summed over the 19 steps, then the mean over the 16
windows (the seed's loss, which bench-cli's configuration trains); then backward through
time and one torch.optim.Adam(lr=1e-3) step, after optimizer.zero_grad.

Prints one row: the median seconds per batch over the timed batches (after the warm-up),
their range, the process's peak RSS, and GFLOP/s of the products (2 FLOPs a multiply-add:
forward x W_ih and h W_hh of both layers and the output layer, backward twice that).
"""

import argparse
import resource
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    d, n, steps, b = args.size * args.size, args.hidden, args.frames - 1, args.batch
    lstm = torch.nn.LSTM(d, n, num_layers=args.layers)
    out = torch.nn.Linear(n, d)
    params = list(lstm.parameters()) + list(out.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    window = torch.rand(args.frames, b, d)  # [L, B, D]

    def batch():
        optimizer.zero_grad()
        hs, _ = lstm(window[:-1])  # [T, B, N]
        pred = out(hs)  # [T, B, D]
        per_step = (pred - window[1:]).pow(2).mean(2)  # [T, B]
        loss = per_step.sum(0).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup):
        batch()
    times = []
    for _ in range(args.batches):
        start = time.perf_counter()
        batch()
        times.append(time.perf_counter() - start)
    # Multiply-adds per sample and step: layer 0 (D + N) x 4N, later layers 2N x 4N, output N x D.
    macs = steps * b * ((d + n) * 4 * n + (args.layers - 1) * 2 * n * 4 * n + n * d)
    flops = 3 * 2 * macs  # forward, and a backward of twice its products
    median = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"fc-lstm {args.layers}x{n} pytorch  {args.threads} thr  {median:.3f} s/batch  "
        f"(min {min(times):.3f}, max {max(times):.3f})  peak {peak:.0f} MiB  "
        f"{flops / 1e9:.1f} GFLOP/batch  {flops / 1e9 / median:.1f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
