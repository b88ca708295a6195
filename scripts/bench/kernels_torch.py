"""PyTorch's side of `make bench-kernels`: the same computations as
`ft bench --kernels` (SwiGLU, causal attention, lm head + cross-entropy at
the shapes of `make bench`), forward and forward + backward (gradient of
the first input), median of N runs, on this machine's CPU threads."""

import statistics
import sys
import time

import torch
import torch.nn.functional as F

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
torch.manual_seed(0)
B, H, KV, L, D = 4, 9, 3, 512, 64
N, E, V = B * L, 576, 49152


def swiglu(a, b):
    return F.silu(a) * b


def attention(q, k, v):
    k = k.repeat_interleave(H // KV, dim=1)
    v = v.repeat_interleave(H // KV, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.125)


targets = torch.randint(0, V, (N,))


def cross_entropy(h, w):
    return F.cross_entropy(h @ w.T, targets, reduction="none")


cases = [
    ("swiglu 4×512×1536", swiglu, [torch.randn(B, L, 1536), torch.randn(B, L, 1536)]),
    ("causal attention 4×9(3)×512×64", attention,
     [torch.randn(B, H, L, D), torch.randn(B, KV, L, D), torch.randn(B, KV, L, D)]),
    ("lm head + cross-entropy 2048×576×49152", cross_entropy,
     [torch.randn(N, E), torch.randn(V, E) * 0.02]),
]


def median_ms(f):
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        f()
        if i:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
for name, op, inputs in cases:
    def forward():
        with torch.no_grad():
            op(*inputs)

    def backward():
        x = inputs[0].clone().requires_grad_(True)
        op(x, *inputs[1:]).sum().backward()

    print(f"{name:40} forward {median_ms(forward):8.1f} ms   fwd+bwd {median_ms(backward):8.1f} ms")
