#!/usr/bin/python3
"""The all-reduce benchmark's reference: torch.distributed's gloo all-reduce between --procs
processes on this machine (over loopback tcp), of float32 tensors of the given sizes. Every
rep's result is checked on every rank (a wrong sum ends the run with an error). Prints one line
per size:
    gloo <torch version> procs <n> mib <size> ms <median> min_ms <fastest> reps <k>
Run with Debian's interpreter (/usr/bin/python3, package python3-torch)."""
import argparse
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def default_reps(mib):
    """The same steps per size as tessel-bench-allreduce's default."""
    return 20 if mib <= 1 else 10 if mib <= 16 else 5


def rank_main(rank, args, port, results):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.procs)
    expected = args.procs * (args.procs + 1) / 2  # rank r contributes r + 1
    for mib in args.sizes:
        reps = args.reps or default_reps(mib)
        x = torch.empty((mib * 2**20 // 4,))
        times = []
        for rep in range(args.warmup + reps):
            x.fill_(float(rank + 1))
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(x)
            elapsed = time.perf_counter() - start
            if rep >= args.warmup:
                times.append(elapsed)
            if not torch.all(x == expected).item():
                wrong = x[x != expected][0].item()
                raise SystemExit(f"gloo all-reduce of {mib} MiB on rank {rank} gave {wrong}, expected {expected}")
        if rank == 0:
            results.put((mib, statistics.median(times), min(times), len(times)))
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1, 16, 256])
    parser.add_argument("--reps", type=int, default=0, help="steps per size; 0: fewer for larger sizes")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    if args.procs < 2:
        parser.error("--procs must be 2 or more")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=rank_main, args=(rank, args, port, results)) for rank in range(args.procs)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=600)
        if p.exitcode != 0:
            raise SystemExit(f"a gloo rank exited with {p.exitcode}")
    while not results.empty():
        mib, median, fastest, reps = results.get()
        print(f"gloo {torch.__version__} procs {args.procs} mib {mib} ms {1e3 * median:.3f} min_ms {1e3 * fastest:.3f} "
              f"reps {reps}", flush=True)


if __name__ == "__main__":
    main()
