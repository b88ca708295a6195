"""PyTorch's side of `make bench-kernels`: the same computations as
`ft bench --kernels` (SwiGLU, causal attention, lm head + cross-entropy,
the LoRA projection and RMSNorm at the shapes of `make bench`), forward and
forward + backward (gradients of the traced inputs, not of the frozen
weights), median of N runs, on this machine's CPU threads."""

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


head = torch.randn(V, E) * 0.02
base = torch.randn(1536, E)
norm_weight = torch.randn(E)


def cross_entropy(h):
    return F.cross_entropy(h @ head.T, targets, reduction="none")


def lora(x, a, b):
    # PEFT's LoRA layer: base output plus the scaled adapter path.
    return x @ base.T + (x @ a @ b) * 2.0


def rms_norm(x):
    return F.rms_norm(x, (E,), norm_weight, eps=1e-5)


# (name, function, traced inputs): frozen weights are globals above.
cases = [
    ("swiglu 4×512×1536", swiglu, [torch.randn(B, L, 1536), torch.randn(B, L, 1536)]),
    ("causal attention 4×9(3)×512×64", attention,
     [torch.randn(B, H, L, D), torch.randn(B, KV, L, D), torch.randn(B, KV, L, D)]),
    ("lm head + cross-entropy 2048×576×49152", cross_entropy, [torch.randn(N, E)]),
    ("LoRA projection 2048×576→1536, r 8", lora,
     [torch.randn(N, E), torch.randn(E, 8), torch.randn(8, 1536)]),
    ("RMSNorm 4×512×576", rms_norm, [torch.randn(B, L, E)]),
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
        traced = [t.clone().requires_grad_(True) for t in inputs]
        op(*traced).sum().backward()

    print(f"{name:40} forward {median_ms(forward):8.1f} ms   fwd+bwd {median_ms(backward):8.1f} ms")
