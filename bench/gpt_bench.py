#!/usr/bin/python3
"""GPT training step time: tessel-gpt against the same model in PyTorch, at 1 and 2 threads.

    /usr/bin/python3 bench/gpt_bench.py [--tessel build/apps/gpt/tessel-gpt] [--steps 30]
        [--threads 1,2] [--precisions f32,bf16,bf16-activations] [tessel-gpt model flags: --width 128 --layers 4 ...]

Both train the GPT of apps/models/gpt (tessel-gpt's defaults: width 128, 4 heads, 4 layers,
context 64, batch 32) with AdamW, clipping and the schedule, in one process. Tessel's step time
is taken between its progress lines at step 10 and at the last one before the end (the end's
line comes after the closing validation), so compiling and the first steps are left out.
PyTorch's is the mean over steps - 10 steps after 3 warm-up steps, in a child process of its
own. Each side runs --repeats times (3), alternating with the other, and its fastest run
counts: this host's speed drifts by up to 30% between runs. Each run sets
OPENBLAS_NUM_THREADS and (for PyTorch) torch.set_num_threads to the same count. GFLOP/s counts
the matmuls of forward and backward (2 m n k each, 3 times for the backward pass included).
bf16 is mixed precision on both sides: tessel-gpt --matmuls bf16 (every product on bf16 operands
through oneDNN, f32 master weights, optimizer state and other ops) against PyTorch's forward under
torch.autocast("cpu", torch.bfloat16), which also runs its matmuls on bf16 and keeps f32 weights.
bf16-activations is tessel-gpt --matmuls bf16 --activations bf16 (every activation and gradient
stored in bf16, f32 master weights and AdamW) against PyTorch's forward on bf16 copies of the
f32 parameters (p.to(torch.bfloat16) at each step), so that its activations are bf16 too.
"""
import argparse
import math
import multiprocessing
import os
import re
import subprocess
import sys
import time

try:
    import torch
except ImportError as missing:
    print(f"gpt_bench: skipped: PyTorch is not installed ({missing})")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch_check import forward  # noqa: E402  the same model as the equivalence check


def matmul_flops(config):
    """FLOPs of one training step's matmuls: 3x the forward pass (forward, and two for backward)."""
    width, layers, context, batch, vocab = (config[k] for k in ("width", "layers", "context", "batch", "vocab"))
    rows = batch * context
    per_layer = 2 * rows * width * width * 4          # q, k, v and the output projection
    per_layer += 2 * rows * width * 4 * width * 2     # the MLP, 4x wide
    per_layer += 2 * batch * context * context * width * 2  # scores and the weighted values
    return 3 * (layers * per_layer + 2 * rows * width * vocab)


def tessel_step_seconds(binary, threads, steps, flags):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    command = [binary, "--threads", str(threads), "--steps", str(steps), "--print-every", "10", "--sample", "0",
               "--eval-every", str(10 ** 9), "--eval-batches", "1"] + flags
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    points = {}
    for line in out.splitlines():
        found = re.match(r"step (\d+)/\d+ .* (\d+) tok/s", line)
        if found:
            points[int(found.group(1))] = int(found.group(2))
    if 10 not in points or not any(10 < step < steps for step in points):
        sys.exit(f"gpt_bench: tessel-gpt printed no progress at step 10 and after it before the end:\n{out}")
    return points


def torch_step_seconds(config, precision, threads, steps):
    """Seconds per training step of the same model and optimizer in PyTorch, on random tokens."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    width, vocab, context = config["width"], config["vocab"], config["context"]
    shapes = {"embedding/tokens": (vocab, width), "embedding/positions": (context, width),
              "final/gain": (width,), "final/bias": (width,), "head/w": (width, vocab)}
    for i in range(config["layers"]):
        at = f"block{i}/"
        for norm in ("ln1", "ln2"):
            shapes[at + norm + "/gain"] = (width,)
            shapes[at + norm + "/bias"] = (width,)
        for w in ("wq", "wk", "wv", "wo"):
            shapes[at + "attention/" + w] = (width, width)
        for b in ("bq", "bv", "bo"):
            shapes[at + "attention/" + b] = (width,)
        shapes[at + "mlp/w1"], shapes[at + "mlp/b1"] = (width, 4 * width), (4 * width,)
        shapes[at + "mlp/w2"], shapes[at + "mlp/b2"] = (4 * width, width), (width,)
    params = {n: (torch.randn(s, generator=generator) * 0.02).requires_grad_(True) for n, s in shapes.items()}
    optimizer = torch.optim.AdamW(list(params.values()), lr=1e-3)
    mask = torch.triu(torch.full((context, context), -1e9), diagonal=1)
    inputs = torch.randint(0, vocab, (config["batch"], context), generator=generator)
    targets = torch.randint(0, vocab, (config["batch"], context), generator=generator)

    def step():
        optimizer.zero_grad()
        if precision == "bf16-activations":
            halves = {name: p.to(torch.bfloat16) for name, p in params.items()}
            loss = forward(halves, config, inputs, targets, mask.to(torch.bfloat16)).float()
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = forward(params, config, inputs, targets, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        optimizer.step()

    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(steps - 10):
        step()
    return (time.perf_counter() - started) / (steps - 10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--tessel", default=os.path.join(here, "..", "build", "apps", "gpt", "tessel-gpt"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--precisions", default="f32,bf16,bf16-activations")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each side, alternating; the fastest counts (this host's speed drifts)")
    args, flags = parser.parse_known_args()
    if args.steps < 30:
        sys.exit("gpt_bench: --steps must be at least 30 (the span runs from step 10 to the last line before the end)")
    # The model flags among those passed on to tessel-gpt, so that PyTorch builds the same model.
    model = argparse.ArgumentParser(add_help=False)
    for key, default in (("width", 128), ("heads", 4), ("layers", 4), ("context", 64), ("batch", 32)):
        model.add_argument("--" + key, type=int, default=default)
    config = dict(vars(model.parse_known_args(flags)[0]), vocab=96)
    tokens = config["batch"] * config["context"]
    flops = matmul_flops(config)
    print(f"GPT width {config['width']}, {config['heads']} heads, {config['layers']} layers, context "
          f"{config['context']}, batch {config['batch']} ({tokens} tokens a step, {flops / 1e9:.2f} GFLOP of matmul "
          f"a step), AdamW; one process")
    print(f"{'precision':>16}  {'threads':>7}  {'tessel ms':>9}  {'tok/s':>7}  {'GFLOP/s':>7}  {'pytorch ms':>10}  {'tok/s':>7}  "
          f"{'GFLOP/s':>7}  {'tessel / pytorch':>16}")
    runs = [(p, int(t)) for p in args.precisions.split(",") for t in args.threads.split(",")]
    for precision, threads in runs:
        precision_flags = {"f32": ["--matmuls", "f32"], "bf16": ["--matmuls", "bf16"],
                           "bf16-activations": ["--matmuls", "bf16", "--activations", "bf16"]}
        if precision not in precision_flags:
            sys.exit(f"gpt_bench: --precisions takes f32, bf16 and bf16-activations, not {precision!r}")
        def ours_once():
            # Tessel: time between the progress lines at step 10 and at the last step.
            points = tessel_step_seconds(args.tessel, threads, args.steps, flags + precision_flags[precision])
            # The line at the last step comes after the closing validation (and its plan's
            # compile): the last line printed before it ends the span.
            last = max(step for step in points if step < args.steps)
            elapsed = lambda step: step * tokens / points[step]
            return (elapsed(last) - elapsed(10)) / (last - 10)
        # PyTorch in a child process of its own each time: the OpenMP and OpenBLAS threads a run
        # leaves spinning in this process took cores from the next tessel-gpt run (its 2-thread
        # f32 step measured 145 ms here against 96 ms alone).
        context_of = multiprocessing.get_context("spawn")

        def theirs_once():
            os.environ["OPENBLAS_NUM_THREADS"] = str(threads)  # read by the child's OpenBLAS as it loads
            with context_of.Pool(1) as pool:
                return pool.apply(torch_step_seconds, (config, precision, threads, args.steps))

        ours, theirs = math.inf, math.inf
        for _ in range(max(1, args.repeats)):
            ours = min(ours, ours_once())
            theirs = min(theirs, theirs_once())
        print(f"{precision:>16}  {threads:7d}  {ours * 1e3:9.1f}  {tokens / ours:7.0f}  {flops / ours / 1e9:7.1f}  {theirs * 1e3:10.1f}  "
              f"{tokens / theirs:7.0f}  {flops / theirs / 1e9:7.1f}  {theirs / ours:15.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
