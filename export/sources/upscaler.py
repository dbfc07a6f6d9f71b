"""An Atelier upscaler package (diffusion/nets/upscaler_package.py; docs/MODEL_REPOSITORY.md,
"Upscalers") as export components: `upscaler` and, when the package has it, `upscaler_fast`."""

from __future__ import annotations

from pathlib import Path

import torch

from diffusion.nets.upscaler import DiffusionUpscaler, FastUpscaler, UpscalerConfig
from diffusion.nets.upscaler_package import load_package
from export.component import Component
from export.source import UpscalerSource
from repository.manifest import ImageSpec, UpscalerSpec


def _example_side(cfg: UpscalerConfig) -> int:
    # Four stride cells a side: small enough to check quickly, big enough for every level to see a border.
    return 4 * cfg.size_multiple


def diffusion_component(net: DiffusionUpscaler) -> Component:
    cfg = net.config
    side = _example_side(cfg)

    def example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        # sigma log-uniform over the sampler's range; the sample at the scale the chain has there.
        lo, hi = torch.log(torch.tensor(cfg.sigma_min)), torch.log(torch.tensor(cfg.sigma_max))
        sigma = torch.exp(lo + (hi - lo) * torch.rand(batch, generator=g))
        scale = torch.sqrt(sigma**2 + cfg.sigma_data**2)[:, None, None, None]
        sample = torch.randn(batch, cfg.channels, side, side, generator=g) * scale
        low_res = torch.rand(batch, cfg.channels, side, side, generator=g) * 2 - 1
        aug = torch.rand(batch, generator=g) * cfg.max_aug_level
        return sample, sigma, low_res, aug

    spatial = {0: "batch", 2: "height", 3: "width"}
    return Component(role="upscaler", module=net, input_names=("sample", "sigma", "low_res", "aug_level"),
                     output_name="out", example=example,
                     dynamic_axes={"sample": dict(spatial), "sigma": {0: "batch"}, "low_res": dict(spatial),
                                   "aug_level": {0: "batch"}},
                     dynamic_size=True)


def fast_component(net: FastUpscaler) -> Component:
    cfg = net.config
    side = _example_side(cfg)

    def example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch, cfg.channels, side, side, generator=g) * 2 - 1,)

    return Component(role="upscaler_fast", module=net, input_names=("low_res",), output_name="out", example=example,
                     dynamic_axes={"low_res": {0: "batch", 2: "height", 3: "width"}}, dynamic_size=True)


def load_upscaler_package(path: Path, tiling: bool = False) -> UpscalerSource:
    if tiling:
        raise ValueError("--tiling is for base models: an upscaler tiles large inputs itself "
                         "(docs/MODEL_REPOSITORY.md)")
    package = load_package(Path(path))
    components = [diffusion_component(package.diffusion)]
    provenance = {**package.raw.get("provenance", {}), "upscaler_weights": package.diffusion_weights.name,
                  "upscaler_config": package.config.to_dict()}
    if package.fast is not None:
        components.append(fast_component(package.fast))
        provenance.update(upscaler_fast_weights=package.fast_weights.name,
                          upscaler_fast_config=package.fast.config.to_dict())
    spec = UpscalerSpec(**package.sampling())
    problems = spec.problems()
    if problems:
        raise ValueError(f"{package.path / 'config.json'}: " + "; ".join(problems))
    size, channels = int(package.inference["image_size"]), package.config.channels
    raw = package.raw
    return UpscalerSource(
        kind="upscaler", path=package.path, components=components,
        image=ImageSpec(width=size, height=size, channels=channels, premultiplied_alpha=channels == 4),
        upscaler=spec, data_card=raw.get("data_card", {}), licenses=tuple(raw.get("licenses", ())),
        provenance=provenance,
        description=raw.get("description", f"Atelier x{package.config.factor} diffusion upscaler"),
    )
