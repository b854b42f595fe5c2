"""Gloo all-reduce timing, for bench/AllReduce: W processes on 127.0.0.1, fp32 SUM of N floats.

    python3 gloo_allreduce.py --world 4 --floats 11200000 --iters 15 --warmup 3 --port 29500

Each rank prints 'rank R median_ms X'; the caller takes the slowest rank. Each timed iteration
starts after a barrier, as in the .NET ranks.
"""
import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank, args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    torch.set_num_threads(1)  # W processes share 2 cores; Gloo's reduction runs on its own thread
    dist.init_process_group("gloo", rank=rank, world_size=args.world)
    buffer = torch.rand(args.floats, dtype=torch.float32)
    times = []
    for i in range(args.warmup + args.iters):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        elapsed = time.perf_counter() - start
        buffer.div_(args.world)  # keep values bounded; not timed
        if i >= args.warmup:
            times.append(elapsed * 1000)
    print(f"rank {rank} median_ms {statistics.median(times):.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--floats", type=int, required=True)
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--port", type=int, default=29500)
    args = parser.parse_args()
    mp.spawn(run, args=(args,), nprocs=args.world, join=True)
