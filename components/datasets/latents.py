"""A VAE's latent space as data: images encoded once into shards, samples decoded before scoring.

Latents are stored normalised, z = (E(x) - shift) * scale, with E the mean of the
encoder's posterior and (scale, shift) the VAE's `scaling_factor` and `shift_factor`
(the latent-diffusion convention), so a flow map trains on roughly unit-variance data;
decoding inverts it, x = D(z / scale + shift). The shard manifest records the VAE's
folder, a SHA-256 of its weights, the scale and shift, and the decoded image shape
(`LatentInfo`); decoding checks the hash, so samples are never decoded by another VAE.
"""

import hashlib
from pathlib import Path

import attrs
import torch
from torch import Tensor, nn

from flowmap_components.datasets.shard_format import DataError, LatentInfo

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def weights_hash(folder: Path) -> str:
    """SHA-256 over the VAE folder's weight files (name and bytes, in name order)."""
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise DataError(f"{folder} holds no VAE weights (*.safetensors or *.bin)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_vae(folder: str | Path) -> nn.Module:
    """The diffusers `AutoencoderKL` saved in `folder`, frozen, in eval mode (never downloaded)."""
    from flowmap_components.teachers import diffusers_drift

    diffusers = diffusers_drift.diffusers_module()
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise DataError(f"{folder} is not a diffusers VAE folder (no config.json)")
    return diffusers_drift.frozen(diffusers.AutoencoderKL, folder, DataError)


@attrs.define
class Codec:
    """A VAE with its latent normalisation: images in [-1, 1] <-> normalised latents."""

    vae: nn.Module
    scale: float
    shift: float

    @classmethod
    def of(cls, folder: str | Path, scale: float | None = None, shift: float | None = None) -> "Codec":
        """The VAE in `folder`, normalised by its config's scaling and shift factors unless given."""
        vae = load_vae(folder)
        config_scale = getattr(vae.config, "scaling_factor", 1.0)
        config_shift = getattr(vae.config, "shift_factor", None) or 0.0
        return cls(
            vae, float(config_scale if scale is None else scale), float(config_shift if shift is None else shift)
        )

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Normalised latents (the posterior mean) of images `(n, C, H, W)` in [-1, 1]."""
        parameter = next(self.vae.parameters())
        posterior = self.vae.encode(images.to(parameter.device, parameter.dtype)).latent_dist
        return (posterior.mean - self.shift) * self.scale

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Images in [-1, 1] (not clipped) of normalised latents `(n, c, h, w)`, on the latents' device."""
        parameter = next(self.vae.parameters())
        z = latents.to(parameter.device, parameter.dtype) / self.scale + self.shift
        return self.vae.decode(z).sample.to(latents.device, latents.dtype)


def codec_for(info: LatentInfo, vae: str | None = None) -> Codec:
    """The codec that made a shard set's latents: its recorded VAE folder (or `vae`, where it
    was moved), checked against the recorded weights hash."""
    folder = Path(vae if vae is not None else info.vae)
    if not folder.is_dir():
        raise DataError(
            f"the latents were made by the VAE at {info.vae}, which is not a folder here: "
            "bind dataset.shards.vae to where it is now"
        )
    found = weights_hash(folder)
    if found != info.vae_sha256:
        raise DataError(
            f"the VAE at {folder} (weights sha256 {found[:12]}...) is not the one the latents were written with "
            f"({info.vae_sha256[:12]}...)"
        )
    return Codec.of(folder, info.scale, info.shift)
