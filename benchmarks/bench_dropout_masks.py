"""Dropout masks: what each way of drawing them costs, in nanoseconds an element, taking turns.

    python benchmarks/bench_dropout_masks.py --output benchmarks/results-dropout-masks.json

Every way fills or reads warm buffers of ``--elements`` float32 elements (16M by default, about a
DistilBERT forward pass's masks at MRPC's mean length), keep probability 0.9. The ways take turns,
one run each a round, for ``--rounds`` rounds; each way's figure is its median over the rounds,
so a slow minute on a shared machine slows every way alike. Each thread count runs on its own
(``torch.set_num_threads``): ``--threads 1,2``.

The ways:

- ``bernoulli_``: PyTorch's draw, what ``dropout`` does on the CPU (``empty.bernoulli_(1 - p)``,
  one element after the other from the CPU generator, whatever the thread count);
- ``torch-dropout``: ``torch.nn.functional.dropout`` in training mode (the draw, the scaling and
  the product: today's whole forward dropout);
- ``numpy-philox-raw`` and ``numpy-sfc64-raw``: the bare generators, NumPy's Philox4x64-10 and
  SFC64 (not counter-based; for scale), 64 bits a word, four 16-bit elements a word, one thread;
- ``torch-philox4x32``: Philox4x32-10 in int64 torch operations on 256K-element chunks (a
  candidate: every one of its ~100 operations a block reads and writes memory);
- ``torch-philox4x64``: gluebox's torch-operations path (the one a GPU runs), here on the CPU
  (on a sixteenth of the elements);
- ``gluebox-mask``: gluebox's draw alone (NumPy's Philox and the threshold, in chunks on the
  calling thread, as in a training step): the mask packed to bits;
- ``gluebox-dropout``: gluebox's forward dropout, ``(x * s) * k`` (draw, product, and the mask kept
  1 bit an element);
- ``gluebox-backward`` and ``gluebox-backward-drawn-again``: the backward pass's product with the
  forward's mask, kept 1 bit an element (gluebox's way), and with the mask drawn again from its
  counters (the previous version's: nothing kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gluebox.training import philox
from gluebox.training import dropout
from gluebox.training.dropout import Mask, Place, apply

P = 0.1
KEY = (42, 0)
PLACE = Place(7, 0, 3)
SLOW = 16
"""The torch Philox4x64 way fills 1/SLOW of the elements (it is that much slower); its figure is per element."""
PHILOX4X32_CHUNK = 1 << 16
"""Blocks of four elements per chunk of the torch Philox4x32 candidate: 256K elements."""


def philox4x32_torch(c0: torch.Tensor, high: tuple[int, int, int], key: tuple[int, int]):
    """Philox4x32-10 (Random123) in int64 torch operations; the four words of each block."""
    m0, m1, w0, w1, mask = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF
    x0, x1, x2, x3 = c0, *(torch.full_like(c0, word) for word in high)
    k0, k1 = key
    for round_ in range(10):
        if round_:
            k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
        p0, p1 = x0 * m0, x2 * m1
        x0, x1, x2, x3 = ((p1 >> 32) ^ x1 ^ k0) & mask, p1 & mask, ((p0 >> 32) ^ x3 ^ k1) & mask, p0 & mask
    return x0, x1, x2, x3


WAYS = ("bernoulli_", "torch-dropout", "numpy-philox-raw", "numpy-sfc64-raw", "torch-philox4x32", "torch-philox4x64",
        "gluebox-mask", "gluebox-dropout", "gluebox-backward", "gluebox-backward-drawn-again")


class Ways:
    """Every way, as a function that does its work once on the buffers."""

    def __init__(self, n: int):
        self.n = n
        self.x = torch.randn(n)
        self.grad = torch.randn(n)
        self.noise = torch.empty(n)
        self.drawn = Mask(KEY, PLACE)
        self.drawn.apply(self.x, P)

    def mask(self) -> np.ndarray:
        """gluebox's draw alone: the mask, 1 bit an element, in chunks (on the calling thread, as in training)."""
        bits = np.empty(-(-self.n // 8), dtype=np.uint8)
        dropout._mask_numpy(bits, self.n, P, KEY, PLACE)
        return bits

    def torch_philox4x32(self) -> None:
        blocks = self.n // 4
        for start in range(0, blocks, PHILOX4X32_CHUNK):
            c0 = torch.arange(start, min(blocks, start + PHILOX4X32_CHUNK), dtype=torch.int64)
            words = philox4x32_torch(c0, PLACE.counter_high, KEY)
            torch.stack([w < round((1 - P) * 2**32) for w in words], dim=1)  # 32 bits an element

    def functions(self) -> dict:
        return {
            "bernoulli_": lambda: self.noise.bernoulli_(1 - P),
            "torch-dropout": lambda: torch.nn.functional.dropout(self.x, P, training=True),
            "numpy-philox-raw": lambda: np.random.Philox(key=np.array(KEY, dtype=np.uint64)).random_raw(self.n // 4),
            "numpy-sfc64-raw": lambda: np.random.SFC64(1).random_raw(self.n // 4),
            "torch-philox4x32": self.torch_philox4x32,
            "torch-philox4x64": lambda: philox.words_torch(KEY, PLACE.counter_high, 0, self.n // 4 // SLOW),
            "gluebox-mask": self.mask,
            "gluebox-dropout": lambda: Mask(KEY, PLACE).apply(self.x, P),
            "gluebox-backward": lambda: self.drawn.apply(self.grad, P),
            "gluebox-backward-drawn-again": lambda: apply(self.grad, P, KEY, PLACE),
        }


def measure(ways: list[str], n: int, rounds: int, threads: int) -> dict[str, float]:
    """Median nanoseconds an element of each way at ``threads`` torch threads, the ways taking turns."""
    torch.set_num_threads(threads)
    functions = Ways(n).functions()
    for way in ways:
        functions[way]()  # warm: buffers touched, thread pools started
    times: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way in ways:
            start = time.perf_counter()
            functions[way]()
            times[way].append((time.perf_counter() - start) / (n // SLOW if way == "torch-philox4x64" else n) * 1e9)
    return {way: statistics.median(values) for way, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=16 * 2**20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--output", default="benchmarks/results-dropout-masks.json")
    args = parser.parse_args()
    ways = args.ways.split(",")
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train import cpu_model

    results = {threads: measure(ways, args.elements, args.rounds, threads)
               for threads in map(int, args.threads.split(","))}
    report = {"cpu_model": cpu_model(), "machine": platform.machine(), "cpus": os.cpu_count(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
              "numpy": np.__version__, "elements": args.elements, "rounds": args.rounds, "p": P,
              "ns_per_element": {str(threads): values for threads, values in results.items()}}
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"CPU: {report['cpu_model']} ({report['cpus']} CPUs), {args.elements:,} elements, ns an element "
          f"(median of {args.rounds} rounds, the ways taking turns)")
    print(f"{'way':<30}" + "".join(f"{f'{t} thread(s)':>14}" for t in results))
    for way in ways:
        print(f"{way:<30}" + "".join(f"{values[way]:>14.2f}" for values in results.values()))


if __name__ == "__main__":
    main()
