"""What memfit.fit's retain_cpu_memory default changes: minor page faults per step, the step's CPU
time and the resident memory, for resnet18 (batch 8, 64x64, SGD with momentum, one torch thread)
trained with memfit.fit in program order.

    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/retain_probe.py default [STEPS [WARMUP]]
    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/retain_probe.py retain [STEPS [WARMUP]]

One process per mode: mallopt is process-wide and stays. CPU times on a shared machine are noisy;
the fault counts are the figure to read.
"""
import resource
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

import memfit


def rss_mib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() >> 20


def main(mode: str, steps: str = "8", warmup: str = "2") -> None:
    steps, warmup = int(steps), int(warmup)
    if mode not in ("default", "retain"):
        raise SystemExit("usage: retain_probe.py default|retain")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    m = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,))
    step = memfit.fit(m, opt, F.cross_entropy, (x, y), retain_cpu_memory=mode == "retain")
    for _ in range(warmup):
        step(x, y)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu = []
    for _ in range(steps):
        start = time.process_time()
        step(x, y)
        cpu.append(time.process_time() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    cpu.sort()
    print(f"{mode}: retained {step.retained_cpu_memory}, minor faults/step {faults / steps:.0f}, "
          f"median CPU ms/step {1000 * cpu[steps // 2]:.1f}, RSS now {rss_mib()} MiB, "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MiB")


if __name__ == "__main__":
    main(*sys.argv[1:4])
