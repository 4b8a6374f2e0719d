"""Learned task-oriented bottleneck codecs for split inference.

At a split point of a staged model, a small encoder on the sending tier maps the C×H×W
features to a few latent channels, rounded to integers; the receiving tier entropy-codes
nothing but those integers' probabilities allow, decodes them back into C×H×W features
and runs the rest of the model. Trained with the task loss plus β times the rate (an
information bottleneck, after Shao, Mao and Zhang, JSAC 2022), the latent keeps only what
the task needs.

The rate model is a discretised Laplace distribution per latent channel (a learned
location and scale). Training adds uniform noise to estimate the rate; at run time the
same distributions become rANS tables (:mod:`tierwise.codecs.rans`), so a message costs
close to the bits the training objective counted.

A codec file (``.npz``, no pickle) holds the weights, the model and split it belongs to,
and a model card with its measured rate and quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tierwise.codecs import rans
from tierwise.codecs.base import Encoded, TrainedCodec, shape_of
from tierwise.codecs.codec_file import parse_header, read_codec_file, write_codec_file
from tierwise.errors import InputError, WireFormatError

#: Latents are clamped to [−RANGE, RANGE] in training and at run time alike, so the
#: decoder never meets a value it was not trained on.
RANGE = 31
# The rate never counts a value as rarer than the coder can code it (one table slot).
_MIN_P = 1.0 / rans.TOTAL


class BottleneckNet(nn.Module):
    """Encoder, decoder and per-channel rate model for features of shape C×H×W."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, channels: int, latent: int, hidden: int, stride: int) -> None:
        super().__init__()
        self.shape_args = {"channels": channels, "latent": latent, "hidden": hidden}
        self.stride = stride
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, stride=stride, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, latent, 1),
        )
        upsample: list[nn.Module] = [nn.Upsample(scale_factor=stride)] if stride > 1 else []
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, hidden, 1),
            nn.ReLU(inplace=True),
            *upsample,
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )
        self.loc = nn.Parameter(torch.zeros(latent))
        self.log_scale = nn.Parameter(torch.zeros(latent))
        # Per-channel statistics of the features: the encoder reads standardised values
        # and the decoder writes in the features' own scale, so that at the start of
        # training the tail sees typical features. (Feeding a frozen tail near-zero
        # features left EfficientNet-Lite's ReLU6 head without any gradient.)
        self.register_buffer("feature_mean", torch.zeros(channels))
        self.register_buffer("feature_std", torch.ones(channels))

    def set_feature_statistics(self, features: np.ndarray) -> None:
        axes = tuple(i for i in range(features.ndim) if i != 1)
        x = features.astype(np.float32)
        self.feature_mean.copy_(torch.from_numpy(x.mean(axis=axes)))
        self.feature_std.copy_(torch.from_numpy(np.maximum(x.std(axis=axes), 1e-3)))

    def _view(self, stat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return stat.view((1, -1) + (1,) * (like.dim() - 2))

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """The latent, before rounding, clamped to the coder's range."""
        mean, std = self._view(self.feature_mean, features), self._view(self.feature_std, features)
        y: torch.Tensor = self.encoder((features - mean) / std)
        return y.clamp(-RANGE, RANGE)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        out = self.decoder(latent)
        mean, std = self._view(self.feature_mean, out), self._view(self.feature_std, out)
        restored: torch.Tensor = out * std + mean
        return restored

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructed features, bits per sample) as seen in training.

        The rate uses additive uniform noise (a differentiable stand-in for rounding); the
        decoder sees rounded values with a straight-through gradient, as it will at run time.
        """
        y = self.encode(features)
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        rounded = y + (torch.round(y) - y).detach()
        return self.decode(rounded), self.bits(noisy).flatten(1).sum(1)

    def bits(self, y: torch.Tensor) -> torch.Tensor:
        """−log2 P(y) under each channel's Laplace, integrated over [y − ½, y + ½]."""
        view = (1, -1) + (1,) * (y.dim() - 2)
        scale = self.log_scale.exp().clamp_min(0.05).view(view)
        a = (y - self.loc.view(view)).abs()
        upper = torch.exp(-(a + 0.5) / scale)
        # Near the centre the interval straddles the mode; away from it, both ends lie on
        # the same side and the difference of exponentials is taken directly.
        inner = 1 - 0.5 * torch.exp(-(0.5 - a).clamp_min(0) / scale) - 0.5 * upper
        outer = 0.5 * (torch.exp(-(a - 0.5).clamp_min(0) / scale) - upper)
        p = torch.where(a < 0.5, inner, outer).clamp_min(_MIN_P)
        return -torch.log2(p)

    def probability_tables(self) -> rans.Tables:
        """The Laplace of each channel over the integers it can send, as rANS tables."""
        loc = self.loc.detach().double().numpy()
        scale = np.maximum(self.log_scale.detach().double().exp().numpy(), 0.05)
        support = np.arange(-RANGE, RANGE + 1, dtype=np.float64)
        edges = np.concatenate([support - 0.5, [RANGE + 0.5]])
        z = (edges[None, :] - loc[:, None]) / scale[:, None]
        cdf = np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0)), 1 - 0.5 * np.exp(-np.maximum(z, 0)))
        probs = np.maximum(np.diff(cdf, axis=1), _MIN_P)
        return rans.tables_from_probabilities(probs, -RANGE)


class LearnedCodec(TrainedCodec):
    """A trained bottleneck as a feature codec for one model at one split point."""

    kind, lossless, family = "feature", False, "learned"

    def __init__(self, net: BottleneckNet, header: dict[str, Any]) -> None:
        self.net = net.eval()
        self.adopt(header)
        self.tables = net.probability_tables()

    def latent_shape(self, n: int) -> tuple[int, int, int, int]:
        _, h, w = self.input_shape
        s = self.net.stride
        return (n, self.net.shape_args["latent"], -(-h // s), -(-w // s))

    def encode(self, x: np.ndarray) -> Encoded:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise WireFormatError(
                f"codec {self.name} encodes features of shape N×{self._form()} "
                f"(model {self.model}, split {self.split}), got {list(x.shape)}"
            )
        with torch.inference_mode():
            y = torch.round(self.net.encode(torch.from_numpy(x))).numpy().astype(np.int64)
        symbols = y.reshape(-1)
        data = rans.encode(symbols, self._channels(y.shape), self.tables)
        return Encoded(np.frombuffer(data, dtype=np.uint8), {"shape": list(x.shape)})

    def decode(self, array: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        shape = shape_of(meta, self.name)
        if len(shape) != 4 or tuple(shape[1:]) != self.input_shape:
            raise WireFormatError(
                f"codec {self.name} decodes features of shape N×{self._form()}, "
                f"metadata says {list(shape)}"
            )
        if array.dtype != np.uint8 or array.ndim != 1:
            raise WireFormatError(f"{self.name} carries a flat uint8 payload, got {array.dtype}")
        latent = self.latent_shape(shape[0])
        symbols = rans.decode(array.tobytes(), self._channels(latent), self.tables)
        y = torch.from_numpy(symbols.reshape(latent).astype(np.float32))
        with torch.inference_mode():
            out: np.ndarray = self.net.decode(y).numpy()
        return out[:, :, : shape[2], : shape[3]]

    def save(self, path: Path) -> None:
        save_codec(self.net, self.header, path)

    def _form(self) -> str:
        return "×".join(map(str, self.input_shape))

    @staticmethod
    def _channels(latent: tuple[int, ...]) -> np.ndarray:
        n, c, h, w = latent
        return np.broadcast_to(np.arange(c)[None, :, None], (n, c, h * w)).reshape(-1)


def save_codec(net: BottleneckNet, header: dict[str, Any], path: Path) -> None:
    arrays = {f"w.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    net_args = {**net.shape_args, "stride": net.stride}
    write_codec_file(path, arrays, header, {"net": net_args})


def load_codec(path: Path) -> LearnedCodec:
    return learned_from_file(*read_codec_file(path), path)


def learned_from_file(
    arrays: dict[str, np.ndarray], header: dict[str, Any], path: Path
) -> LearnedCodec:
    """The codec in a bottleneck codec file's arrays and header (read by the caller)."""
    parse_header(header, path)
    if "net" not in header:
        raise InputError(f"{path}: codec file has no 'net' in its header")
    net = BottleneckNet(**{k: int(v) for k, v in header["net"].items()})
    state = {k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("w.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit the codec's shape: {exc}") from exc
    return LearnedCodec(net, header)
