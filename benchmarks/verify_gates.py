"""What a squeeze-and-excitation gate, a normalisation and attention cost the verifier.

A gate ``h * g(mean(h))`` is a product of two values that change with the pixel, and the
gate reaches every position: past it the pixel's cone is the whole map, not a window. A
GroupNorm divides by the image's own statistics, a root of a variance: the verifier's
copy runs it as a mean, a square, ``rsqrt`` and products, and past it the cone is the
whole map too. This measures both on the bundled ConvSmall: the network as it is, a copy
with a gate after its first layer (squeeze 16 → 4 channels, excite back, ``2 ·
sigmoid``, the excitation's weights drawn small so the gate stays near 1), and a copy
with ``nn.GroupNorm(1, 16)`` after its first convolution (``eps`` 10⁴ and weight
``√eps``, so it divides by nearly 1; bias the candidates' mean of that layer, so it
subtracts nearly nothing), and a copy with attention pooling after its last layer (the
map pooled 2 × 2 to 16 tokens, single-head self-attention over them — products of two
varying values, a softmax — averaged and added to every position as a per-channel
context, its output weights drawn small so it stays near the plain network), each
verified on the same images with the same budget, on the first test images the network
verifies and every copy classifies alike: the verdict, the share of the threat space
proved, the boxes and the seconds, and each copy's seconds per box over the plain one's.

    python benchmarks/verify_gates.py [--images 5] [--candidates 40] [--budget 60]
        [--seed 0] [--copies gated normed attention multihead sequence-first max-pooled
                  resampled response-normed]

Three more copies: ``nn.MultiheadAttention`` (two heads) in place of that attention,
laid out batch first and, with the same weights, sequence first (``batch_first=False``,
tokens ``[N, B, E]``: the verifier's copy moves the batch axis back first, so the two
should cost alike), a global max pooling's context (``h + proj(amax(h, (2, 3)))``), and
the first layer's map upsampled ×2 (bilinear) and average-pooled back (``resampled``),
and a LocalResponseNorm after the first layer (``response-normed``).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _setup import bench_inputs
from torch import nn

from pixelprior import Verifier


class Gated(nn.Module):
    """ConvSmall with a squeeze-and-excitation gate after its first ReLU."""

    def __init__(self, plain: nn.Module, seed: int) -> None:
        super().__init__()
        self.plain = plain
        channels = plain.features[0].out_channels
        generator = torch.Generator().manual_seed(seed)
        self.squeeze = nn.Conv2d(channels, 4, 1)
        self.excite = nn.Conv2d(4, channels, 1)
        with torch.no_grad():
            for layer, scale in ((self.squeeze, 0.5), (self.excite, 0.05)):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator)
                                   * scale)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.plain.features
        h = features[1](features[0](x))
        gate = 2 * torch.sigmoid(self.excite(torch.relu(self.squeeze(
            h.mean((2, 3), keepdim=True)))))
        h = features[3](features[2](h * gate))
        return self.plain.classifier(h)


class Normed(nn.Module):
    """ConvSmall with a GroupNorm of one group after its first convolution, near the
    identity on the candidates (see the module docstring)."""

    def __init__(self, plain: nn.Module, images: torch.Tensor, eps: float = 1e4) -> None:
        super().__init__()
        self.plain = plain
        channels = plain.features[0].out_channels
        self.norm = nn.GroupNorm(1, channels, eps=eps)
        with torch.no_grad():
            self.norm.weight.fill_(eps ** 0.5)
            self.norm.bias.fill_(float(plain.features[0](images).mean()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.plain.features
        h = features[1](self.norm(features[0](x)))
        return self.plain.classifier(features[3](features[2](h)))


class Attended(nn.Module):
    """ConvSmall with attention pooling after its last ReLU (see the module docstring):
    ``h + proj(mean(softmax(q kᵀ / √d) v))[:, :, None, None]`` over the 2 × 2-pooled
    map's 16 tokens."""

    def __init__(self, plain: nn.Module, seed: int, dim: int = 8) -> None:
        super().__init__()
        self.plain = plain
        channels = plain.features[2].out_channels
        generator = torch.Generator().manual_seed(seed)
        self.q, self.k, self.v = (nn.Linear(channels, dim) for _ in range(3))
        self.proj = nn.Linear(dim, channels)
        with torch.no_grad():
            for layer, scale in ((self.q, 0.3), (self.k, 0.3), (self.v, 0.3),
                                 (self.proj, 0.05)):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator)
                                   * scale / layer.in_features ** 0.5)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.plain.features
        h = features[3](features[2](features[1](features[0](x))))
        tokens = F.avg_pool2d(h, 2).flatten(2).transpose(1, 2)
        q, k, v = self.q(tokens), self.k(tokens), self.v(tokens)
        weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)
        context = self.proj((weights @ v).mean(1))
        return self.plain.classifier(h + context[:, :, None, None])


class MultiHead(nn.Module):
    """ConvSmall with ``nn.MultiheadAttention`` (two heads) over the 2 × 2-pooled map's
    16 tokens after its last ReLU, averaged and added to every position as
    :class:`Attended` adds its context; laid out batch first (``[B, N, E]``) or sequence
    first (``[N, B, E]``, PyTorch's default ``batch_first=False``), the same weights
    either way."""

    def __init__(self, plain: nn.Module, seed: int, batch_first: bool) -> None:
        super().__init__()
        self.plain, self.batch_first = plain, batch_first
        channels = plain.features[2].out_channels
        generator = torch.Generator().manual_seed(seed)
        self.attention = nn.MultiheadAttention(channels, 2, batch_first=batch_first)
        with torch.no_grad():
            self.attention.in_proj_weight.copy_(torch.randn(
                self.attention.in_proj_weight.shape, generator=generator) * 0.3
                / channels ** 0.5)
            self.attention.in_proj_bias.zero_()
            self.attention.out_proj.weight.mul_(0.05)
            self.attention.out_proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.plain.features
        h = features[3](features[2](features[1](features[0](x))))
        tokens = F.avg_pool2d(h, 2).flatten(2)
        if self.batch_first:
            tokens = tokens.transpose(1, 2)
            context = self.attention(tokens, tokens, tokens, need_weights=False)[0].mean(1)
        else:
            tokens = tokens.permute(2, 0, 1)
            context = self.attention(tokens, tokens, tokens, need_weights=False)[0].mean(0)
        return self.plain.classifier(h + context[:, :, None, None])


class MaxContext(nn.Module):
    """ConvSmall with a global max pooling's context after its last ReLU: ``h +
    proj(amax(h, (2, 3)))``, a maximum over the 64 positions per channel, its weights
    drawn small."""

    def __init__(self, plain: nn.Module, seed: int) -> None:
        super().__init__()
        self.plain = plain
        channels = plain.features[2].out_channels
        generator = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(channels, channels)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(self.proj.weight.shape, generator=generator)
                                   * 0.05 / channels ** 0.5)
            self.proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.plain.features
        h = features[3](features[2](features[1](features[0](x))))
        return self.plain.classifier(h + self.proj(h.amax((2, 3)))[:, :, None, None])


class Resampled(nn.Module):
    """ConvSmall with its first layer's map upsampled ×2 (bilinear) and average-pooled
    back after the first ReLU: a smoothing of it, as a decoder's upsampling and an
    encoder's pooling meet; the verifier writes the upsampling as one weight matrix per
    axis, and past it the cone is the whole map."""

    def __init__(self, plain: nn.Module) -> None:
        super().__init__()
        self.plain = plain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.plain.features
        h = features[1](features[0](self.plain.normalize(x)))
        h = F.avg_pool2d(F.interpolate(h, scale_factor=2, mode="bilinear"), 2)
        return self.plain.classifier(features[3](features[2](h)))


class ResponseNormed(nn.Module):
    """ConvSmall with a LocalResponseNorm after its first ReLU, of Caffe's settings (size
    5, α 10⁻⁴, β 0.75, k 1: it divides by nearly 1): the verifier's copy writes it as a
    square, a 1×1 convolution over the channels' windows, a power and a product of two
    values that change with the pixel; the cone keeps its windows."""

    def __init__(self, plain: nn.Module) -> None:
        super().__init__()
        self.plain = plain
        self.norm = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.plain.features
        h = self.norm(features[1](features[0](self.plain.normalize(x))))
        return self.plain.classifier(features[3](features[2](h)))


COPIES = ("gated", "normed", "attention", "multihead", "sequence-first", "max-pooled",
          "resampled", "response-normed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5,
                        help="images the network verifies, compared with the gated copy")
    parser.add_argument("--candidates", type=int, default=40,
                        help="correctly classified test images to look among")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copies", nargs="+", choices=COPIES, default=list(COPIES),
                        help="the copies to compare")
    args = parser.parse_args()
    plain, images, labels, indices = bench_inputs(args.candidates, "convsmall-cifar10")
    copies = {"gated": lambda: Gated(plain, args.seed), "normed": lambda: Normed(plain, images),
              "attention": lambda: Attended(plain, args.seed),
              "multihead": lambda: MultiHead(plain, args.seed, batch_first=True),
              "sequence-first": lambda: MultiHead(plain, args.seed, batch_first=False),
              "max-pooled": lambda: MaxContext(plain, args.seed),
              "resampled": lambda: Resampled(plain),
              "response-normed": lambda: ResponseNormed(plain)}
    networks = {"plain": plain} | {name: copies[name]().eval() for name in args.copies}
    with torch.no_grad():
        agree = torch.stack([net(images).argmax(1) == labels
                             for net in networks.values()]).all(0)
    print(f"convsmall-cifar10 and its copies ({', '.join(args.copies)}), {args.budget:g} s "
          f"per image: the first {args.images} test images the network verifies (and every "
          "copy classifies alike), each verified by all\n")
    print("| test image | network | verdict | proved share | boxes | seconds | ms per box |")
    print("|---|---|---|---|---|---|---|")
    per_box: dict[str, list[float]] = {name: [] for name in networks}
    looked = found = 0
    for image, label, index, same in zip(images, labels, indices, agree, strict=True):
        if found == args.images:
            break
        looked += 1
        if not same:
            continue
        first = verified(plain, image, label, args.budget)
        if first[0].decided_by != "verified":
            continue
        found += 1
        pair = {"plain": first} | {name: verified(net, image, label, args.budget)
                                   for name, net in networks.items() if name != "plain"}
        for name, (result, seconds) in pair.items():
            box = f"{seconds / result.boxes * 1e3:.2f}" if result.boxes else "–"
            print(f"| {int(index)} | {name} | {result.decided_by} | "
                  f"{result.verified_volume:.4f} | {result.boxes:,} | {seconds:.1f} | "
                  f"{box} |", flush=True)
        if all(result.boxes for result, _ in pair.values()):  # (a corner witness: none)
            for name, (result, seconds) in pair.items():
                per_box[name].append(seconds / result.boxes)
    print(f"\n{found} images verified by the network among the first {looked} correctly "
          "classified")
    if per_box["plain"]:
        mean = {name: sum(times) / len(times) for name, times in per_box.items()}
        copies_line = ", ".join(f"{name} {mean[name] * 1e3:.2f} ms: "
                                f"{mean[name] / mean['plain']:.1f}x" for name in args.copies)
        print(f"seconds per box, mean over the {len(per_box['plain'])} images every network "
              f"bounded boxes of: plain {mean['plain'] * 1e3:.2f} ms, {copies_line}")


def verified(model: nn.Module, image: torch.Tensor, label: torch.Tensor, budget: float
             ) -> tuple[object, float]:
    """One image verified by a fresh verifier, and the seconds it took."""
    verifier = Verifier(model, budget=budget)
    began = time.perf_counter()
    (result,) = verifier.verify(image[None], label[None])
    return result, time.perf_counter() - began


if __name__ == "__main__":
    main()
