#!/usr/bin/python3
"""The runtime benchmark's MLP in PyTorch, for comparison: 1024-4096-4096-1024 (by default),
ReLU between layers, no bias, mean-squared-error loss, SGD; with --bf16, the forward under
torch.autocast (bf16 matmuls, f32 weights), as Tessel's bf16 MLP. Prints one line:
    torch <version> threads <n> ms_per_step <t> steps <k>
Run with Debian's interpreter (/usr/bin/python3, package python3-torch)."""
import argparse
import time

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--widths", default="1024,4096,4096,1024")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="matmuls under torch.autocast in bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    widths = [int(w) for w in args.widths.split(",")]
    layers = []
    for i in range(len(widths) - 1):
        if i > 0:
            layers.append(torch.nn.ReLU())
        layers.append(torch.nn.Linear(widths[i], widths[i + 1], bias=False))
    model = torch.nn.Sequential(*layers)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.full((args.batch, widths[0]), 0.1)
    target = torch.zeros(args.batch, widths[-1])

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = model(x)
        loss = torch.mean((out.float() - target) ** 2)
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - start
    print(f"torch {torch.__version__} threads {torch.get_num_threads()} "
          f"ms_per_step {1000 * elapsed / args.steps:.2f} steps {args.steps}")


if __name__ == "__main__":
    main()
