"""OpenAI's modified ResNet image tower (RN50, RN101, RN50x4, RN50x16, RN50x64).

It differs from torchvision's ResNet in three places: a stem of three 3x3 convolutions followed by a
2x2 average pool (no max pool); strided blocks that average-pool by the stride before their last
1x1 convolution and before the shortcut's 1x1 convolution, which both run at stride 1
(anti-aliasing); and an attention pooling instead of the global average pool, whose single query
is the mean of the final feature map.

Parameter names, module construction order (so the random draws of a fresh model) and floating-point
op order follow OpenAI's ``ModifiedResNet``, so their state dicts load unchanged and features are
bit-identical to theirs in the same precision. BatchNorm uses its running statistics only in eval mode:
the frozen backbone is kept in eval mode as built (``build_model``), as OpenAI's and CoOp's code do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EXPANSION = 4  # output channels of a bottleneck block per "planes"


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> (average pool by the stride) -> 1x1 with BatchNorm, plus the shortcut.

    The shortcut is the input itself, or, when the stride or the width changes, the input
    average-pooled by the stride then projected by ``downsample`` (1x1 convolution and BatchNorm).
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * EXPANSION
        self.stride = stride
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, bias=False), nn.BatchNorm2d(out))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.stride) if self.stride > 1 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(self.pool(out)))
        shortcut = x if self.downsample is None else self.downsample(self.pool(x))
        return F.relu(out + shortcut, inplace=True)


class AttentionPool2d(nn.Module):
    """One multi-head attention query, the mean of the feature map, over the mean and every position.

    Positions carry a learned embedding (row 0 for the mean). The output is ``c_proj`` of the attended
    value: the image feature (N, output_dim). ``all_queries`` (off by default, as OpenAI's current code):
    attend from every position and keep the first, the op order of the older copy of OpenAI's code that
    CoOp, CoCoOp and KgCoOp ship (the same values up to float rounding, for HW + 1 times the queries).
    """

    def __init__(self, grid: int, embed_dim: int, num_heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(grid**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads
        self.all_queries = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(start_dim=2).permute(2, 0, 1)  # (N, C, H, W) -> (HW, N, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x])
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x if self.all_queries else x[:1], key=x, value=x,
            embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias, training=self.training,
            need_weights=False, use_separate_proj_weight=True,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
        )  # fmt: skip
        return out[0]


class ModifiedResNet(nn.Module):
    """The image tower: stem, four stages of bottleneck blocks (``layers`` blocks each, widths
    ``width`` x 1, 2, 4, 8, strides 1, 2, 2, 2), attention pooling to ``output_dim`` features.

    Images are ``input_resolution`` pixels square, a multiple of 32 (the total stride).
    """

    def __init__(
        self, layers: tuple[int, int, int, int], output_dim: int, heads: int, input_resolution: int, width: int
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        stem = width // 2
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = nn.Conv2d(stem, stem, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem)
        self.conv3 = nn.Conv2d(stem, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        inplanes = width
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            blocks = [Bottleneck(inplanes, planes, stride=1 if i == 0 else 2)]
            blocks += [Bottleneck(planes * EXPANSION, planes) for _ in range(1, n_blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes * EXPANSION
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        x = F.relu(self.bn3(self.conv3(x)), inplace=True)
        return F.avg_pool2d(x, 2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image features (N, output_dim)."""
        x = self.stem(image.to(self.conv1.weight.dtype))
        for stage in self.stages():
            x = stage(x)
        return self.attnpool(x)

    def initialize_parameters(self) -> None:
        """OpenAI's init on top of PyTorch's defaults: the attention pooling's projections re-drawn from
        N(0, 1 / width), and every block's last BatchNorm scale zeroed (each block starts as its shortcut)."""
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(proj.weight, std=std)
        for stage in self.stages():
            for block in stage:
                nn.init.zeros_(block.bn3.weight)
