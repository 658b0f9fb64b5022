#!/usr/bin/python3
"""The GPT of tessel-gpt, trained side by side in PyTorch.

tessel-gpt --dump DIR writes its initial parameters, every step's batch and its per-step losses.
This script builds the same model in PyTorch from those parameters, trains it on the same batches
with the same AdamW, parameter groups, clipping by global norm and warmup + cosine schedule, and
prints both losses per step with their relative difference.

    /usr/bin/python3 bench/gpt_torch_check.py [--tessel build/apps/gpt/tessel-gpt] [--steps 50]
        [--tolerance 1e-4] [tessel-gpt flags: --width 128 --layers 4 ...]

Exits 0 when every step's losses agree within --tolerance (relative), 1 when they do not, and 77
(the test suite's "skipped") when PyTorch is not installed.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as missing:
    print(f"gpt_torch_check: skipped: PyTorch is not installed ({missing}); "
          "scripts/setup.sh --bench installs Debian's python3-torch")
    sys.exit(77)


def read_dump(directory):
    config, params = {}, {}
    with open(os.path.join(directory, "manifest.txt")) as manifest:
        for line in manifest:
            words = line.split()
            if words[0] == "param":
                name, file, dims = words[1], words[2], [int(d) for d in words[3:]]
                values = np.fromfile(os.path.join(directory, file), dtype="<f4")
                if values.size != math.prod(dims):
                    sys.exit(f"gpt_torch_check: {file} holds {values.size} values, expected {math.prod(dims)}")
                params[name] = torch.from_numpy(values.reshape(dims).copy())
            else:
                config[words[0]] = float(words[1]) if "." in words[1] or "e" in words[1] else int(words[1])
    steps, batch, context = config["steps"], config["batch"], config["context"]
    shape = (steps, batch, context)
    inputs = np.fromfile(os.path.join(directory, "inputs.i64"), dtype="<i8")
    targets = np.fromfile(os.path.join(directory, "targets.i64"), dtype="<i8")
    if inputs.size != math.prod(shape) or targets.size != math.prod(shape):
        sys.exit(f"gpt_torch_check: the dumped batches hold {inputs.size} tokens, expected {math.prod(shape)}")
    losses = {}
    with open(os.path.join(directory, "losses.txt")) as lines:
        for line in lines:
            step, loss = line.split()
            losses[int(step)] = float(loss)
    return (config, params, torch.from_numpy(inputs.reshape(shape)), torch.from_numpy(targets.reshape(shape)),
            losses)


def forward(p, config, tokens, targets, mask):
    layers, heads, width = config["layers"], config["heads"], config["width"]
    rows, context = tokens.shape
    d = width // heads
    norm = lambda x, name: torch.nn.functional.layer_norm(x, (width,), p[name + "/gain"], p[name + "/bias"], 1e-5)
    x = p["embedding/tokens"][tokens] + p["embedding/positions"]
    for i in range(layers):
        at = f"block{i}/"
        n1 = norm(x, at + "ln1")
        heads_of = lambda y: y.reshape(rows, context, heads, d).transpose(1, 2)
        q = heads_of(n1 @ p[at + "attention/wq"] + p[at + "attention/bq"])
        k = heads_of(n1 @ p[at + "attention/wk"])
        v = heads_of(n1 @ p[at + "attention/wv"] + p[at + "attention/bv"])
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d)) + mask
        merged = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(rows, context, width)
        x = x + (merged @ p[at + "attention/wo"] + p[at + "attention/bo"])
        hidden = torch.nn.functional.gelu(norm(x, at + "ln2") @ p[at + "mlp/w1"] + p[at + "mlp/b1"])
        x = x + (hidden @ p[at + "mlp/w2"] + p[at + "mlp/b2"])
    logits = norm(x, "final") @ p["head/w"]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def scheduled_lr(config, update):
    lr, warmup, total, low = config["lr"], config["warmup"], config["steps"], config["min_lr"]
    if update < warmup:
        return lr * (update + 1) / warmup
    span = total - warmup
    progress = 1.0 if span <= 0 else min(1.0, (update - warmup) / span)
    return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * progress))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--tessel", default=os.path.join(here, "..", "build", "apps", "gpt", "tessel-gpt"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args, gpt_flags = parser.parse_known_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as directory:
        command = [args.tessel, "--steps", str(args.steps), "--sample", "0", "--eval-every", str(10 ** 9),
                   "--dump", directory] + gpt_flags
        print("gpt_torch_check:", " ".join(command), flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        config, params, inputs, targets, tessel_losses = read_dump(directory)
    context = config["context"]
    mask = torch.triu(torch.full((context, context), -1e9), diagonal=1)
    for value in params.values():
        value.requires_grad_(True)
    # GPT-2's groups, as MinimizeOptions::decay_only_matrices: no decay below rank 2.
    decayed = [v for v in params.values() if v.dim() >= 2]
    plain = [v for v in params.values() if v.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": config["weight_decay"]},
                                   {"params": plain, "weight_decay": 0.0}],
                                  lr=config["lr"], betas=(0.9, 0.999), eps=1e-8)
    print(f"{'step':>5}  {'tessel':>12}  {'pytorch':>12}  {'relative':>9}  {'lr':>9}  {'grad norm':>9}")
    worst, clipped = 0.0, 0
    for step in range(config["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(config, step)
        optimizer.zero_grad()
        loss = forward(params, config, inputs[step], targets[step], mask)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), config["clip"]) if config["clip"] > 0 else 0.0
        clipped += config["clip"] > 0 and float(norm) > config["clip"]
        optimizer.step()
        ours = tessel_losses.get(step)
        if ours is None:
            sys.exit(f"gpt_torch_check: tessel-gpt wrote no loss for step {step}")
        relative = abs(ours - loss.item()) / abs(loss.item())
        worst = max(worst, relative)
        print(f"{step:5d}  {ours:12.7f}  {loss.item():12.7f}  {relative:9.2e}  {scheduled_lr(config, step):9.2e}  "
              f"{float(norm):9.4f}")
    same = worst <= args.tolerance
    print(f"largest relative difference over {config['steps']} AdamW steps (clipping at {config['clip']}, "
          f"which cut the gradient on {clipped} steps; {config['warmup']} warmup steps, cosine decay): {worst:.2e}: "
          f"{'the same losses' if same else 'DIFFERENT'} (tolerance {args.tolerance:g})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
