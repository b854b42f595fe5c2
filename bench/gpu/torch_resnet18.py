"""PyTorch's side of bench/gpu/run.sh: ResNet-18 (CIFAR stem, the same network the worker builds:
tests/Interop.FunctionalTests/torch_models.py) training images/s on one pre-loaded batch, in fp32
and in bf16 autocast with channels-last (PyTorch's fastest usual recipe). Prints markdown rows."""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "Interop.FunctionalTests"))
import torch_models  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--steps", type=int, default=100)
args = parser.parse_args()
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def throughput(bf16_channels_last):
    torch.manual_seed(0)
    model = torch_models.build("resnet18", 3, 32, 32, 10, stem="cifar").to(device)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    if bf16_channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_channels_last):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(20):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - start)


print(f"| ResNet-18 train step, pre-loaded batch (PyTorch {torch.__version__}) | fp32 | {throughput(False):,.0f} |")
print(f"| ResNet-18 train step, pre-loaded batch (PyTorch {torch.__version__}) | bf16 autocast + channels-last | {throughput(True):,.0f} |")
