"""Networks shared by the algorithms: Conv-4, an MLP, and a batch norm that works per group.

Meta-learners that use batch statistics (MAML and its relatives) normalise each task's batch with
its own statistics (`track_running_stats=False`, as in Finn et al.'s code).  At test time the
query set is pushed through the network in *groups*: one query of each class per group, which is
exactly what the network saw during training when it was trained with one query per class.  The
`groups` argument of `forward` says how many equal, contiguous groups the batch holds; every group
is normalised with its own statistics.  This choice moves MAML's Omniglot accuracy by about three
points (see issue 2), so it is stored with every result (`transductive`, `query_batch`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupBatchNorm2d(nn.Module):
    """Batch norm with batch statistics only, computed separately for each of `groups` groups.

    `primitive=True` builds it from `var_mean`/`rsqrt` instead of the fused kernel: under
    `torch.func.vmap` the fused kernel's batching rule gives wrong *second-order* gradients
    (pytorch/functorch#534; measured 4.7e-3 relative error in float64),
    while the primitive version is exact.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.primitive = False

    def forward(self, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        if groups == 1 and not self.primitive:
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        n, c, h, w = x.shape
        xg = x.reshape(groups, n // groups, c, h, w)  # (G, B, C, H, W)
        var, mean = torch.var_mean(xg, dim=(1, 3, 4), unbiased=False, keepdim=True)
        scale = torch.rsqrt(var + self.eps) * self.weight.view(1, 1, c, 1, 1)
        shift = self.bias.view(1, 1, c, 1, 1) - mean * scale
        return torch.addcmul(shift, xg, scale).reshape(n, c, h, w)


class Conv4(nn.Module):
    """The Conv-4 of Vinyals et al. (2016): 4 x [conv3x3-64, batch norm, ReLU, 2x2 max-pool].

    `arch="strided"` is MAML's Omniglot variant (Finn et al. 2017, section 5.2): stride-2 convs,
    no pooling.  `norm="batch"` uses `GroupBatchNorm2d` (per-task batch statistics; MAML family);
    `norm="running"` uses the standard `nn.BatchNorm2d` with running statistics, so `eval()` makes
    test predictions independent of how queries are batched (ProtoNets' protocol).
    Conv biases are off: a bias right before batch norm has exactly zero gradient, and with Adam
    float32 noise in that zero becomes random steps.
    `n_out=None` returns the flattened embedding; so does `forward(x, embed=True)` (the head's input).
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, n_out: int | None = None,
                 image_size: int = 28, arch: str = "pool", norm: str = "batch"):
        super().__init__()
        if arch not in ("pool", "strided"):
            raise ValueError(f"Conv4 arch must be 'pool' or 'strided', got {arch!r}")
        if norm not in ("batch", "running"):
            raise ValueError(f"Conv4 norm must be 'batch' or 'running', got {norm!r}")
        self.arch, self.norm = arch, norm
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c, hw = in_channels, image_size
        for _ in range(4):
            stride = 2 if arch == "strided" else 1
            self.convs.append(nn.Conv2d(c, hidden, 3, stride=stride, padding=1, bias=False))
            self.norms.append(GroupBatchNorm2d(hidden) if norm == "batch" else nn.BatchNorm2d(hidden))
            c = hidden
            hw = (hw + 1) // 2 if arch == "strided" else hw // 2
        self.embedding_dim = hidden * hw * hw
        self.head = nn.Linear(self.embedding_dim, n_out) if n_out else None

    head_prefix = "head."
    """Parameter names of the output layer start with this (ANIL adapts only these)."""

    def forward(self, x: torch.Tensor, groups: int = 1, embed: bool = False) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = conv(x)
            x = norm(x, groups) if self.norm == "batch" else norm(x)
            x = F.relu(x)
            if self.arch == "pool":
                x = F.max_pool2d(x, 2)
        z = x.flatten(1)  # (N, embedding_dim)
        return self.head(z) if self.head is not None and not embed else z


class MLP(nn.Module):
    """A ReLU MLP, e.g. MAML's 1-40-40-1 sinusoid regressor. `groups` is accepted and ignored."""

    def __init__(self, sizes: tuple[int, ...] = (1, 40, 40, 1)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head_prefix = f"layers.{len(self.layers) - 1}."
        self.embedding_dim = sizes[-2]

    @property
    def head(self) -> nn.Linear:
        return self.layers[-1]

    def forward(self, x: torch.Tensor, groups: int = 1, embed: bool = False) -> torch.Tensor:
        """`embed=True` stops before the last layer (returns its input, after the ReLU)."""
        for i, layer in enumerate(self.layers):
            if embed and i == len(self.layers) - 1:
                break
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def set_primitive_norm(model: nn.Module, on: bool) -> None:
    """Switch every GroupBatchNorm2d in `model` to the primitive (vmap-safe) form or back."""
    for m in model.modules():
        if isinstance(m, GroupBatchNorm2d):
            m.primitive = on
