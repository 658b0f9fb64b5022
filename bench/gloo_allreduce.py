#!/usr/bin/python3
"""The all-reduce benchmark's reference: torch.distributed's gloo all-reduce between 2 processes
on this machine (over loopback tcp), of float32 tensors of the given sizes. Prints one line per
size:
    gloo <torch version> mib <size> ms <median> min_ms <fastest> reps <k>
Run with Debian's interpreter (/usr/bin/python3, package python3-torch)."""
import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank_main(rank, args, port, results):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    for mib in args.sizes:
        x = torch.full((mib * 2**20 // 4,), float(rank + 1))
        times = []
        for rep in range(args.warmup + args.reps):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(x)
            elapsed = time.perf_counter() - start
            if rep >= args.warmup:
                times.append(elapsed)
        # Rank 0 starts at 1 and rank 1 at 2; the first all-reduce makes 3 and each later one doubles it.
        expected = 3.0 * 2.0 ** (args.warmup + args.reps - 1)
        if abs(x[0].item() - expected) > 1e-3 * expected or abs(x[-1].item() - expected) > 1e-3 * expected:
            raise SystemExit(f"gloo all-reduce of {mib} MiB gave {x[0].item()}, expected {expected}")
        if rank == 0:
            results.put((mib, statistics.median(times), min(times), len(times)))
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1, 16, 256])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=rank_main, args=(rank, args, port, results)) for rank in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=600)
        if p.exitcode != 0:
            raise SystemExit(f"a gloo rank exited with {p.exitcode}")
    while not results.empty():
        mib, median, fastest, reps = results.get()
        print(f"gloo {torch.__version__} mib {mib} ms {1e3 * median:.3f} min_ms {1e3 * fastest:.3f} reps {reps}",
              flush=True)


if __name__ == "__main__":
    main()
