"""The model manifest: everything a worker needs to run a model version, as plain dataclasses.

`models/<name>/<version>/manifest.json` is written by `atelier export` and read by the
repository reader (`repository.reader`). The JSON is the contract (see
docs/MODEL_REPOSITORY.md); these dataclasses give it types, defaults, validation, and a
lossless round-trip (`Manifest.from_dict(m.to_dict()) == m`, docs/ARCHITECTURE.md, Contracts: configuration).

Numpy-free and torch-free: gateways and workers import it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from diffusion.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

PREDICTION_TYPES = ("x0", "epsilon", "v_prediction")
TIME_INPUTS = ("sigma", "timestep")
SCHEDULE_KINDS = ("edm", "discrete")
# Roles of the files a version may hold; a variant ("fp16", "optimized", "tiling", ...)
# maps a role to another file with the same inputs and outputs.
BASE_ROLES = ("unet", "vae_decoder", "vae_encoder", "text_encoder", "tokenizer")
UPSCALER_ROLES = ("upscaler", "upscaler_fast")
CONCEPT_ROLES = ("concept_classifier",)
ROLES = BASE_ROLES + UPSCALER_ROLES + CONCEPT_ROLES


class ManifestError(ValueError):
    """A manifest is malformed or contradicts itself."""


T = TypeVar("T")


class _Json:
    """to_dict/from_dict for nested dataclasses; unknown keys are refused, so a typo in a
    hand-edited manifest fails loudly instead of being silently dropped."""

    def to_dict(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        return _from_json(cls, data, cls.__name__)


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _from_json(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _from_json(args[0], data, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ManifestError(f"{where}: unknown field(s) {unknown}")
        kwargs = {k: _from_json(hints[k], v, f"{where}.{k}") for k, v in data.items()}
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise ManifestError(f"{where}: {exc}") from None
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        return tuple(_from_json(item, v, f"{where}[]") for v in data)
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _from_json(item, v, f"{where}.{k}") for k, v in data.items()}
    if tp is float and isinstance(data, int):
        return float(data)
    return data


@dataclass(frozen=True)
class ImageSpec(_Json):
    """Pixel space: what the VAE decoder produces and the encoder takes."""

    width: int = 32
    height: int = 32
    channels: int = 4                      # 4 = RGBA, 3 = RGB
    premultiplied_alpha: bool = True       # RGBA colour is stored multiplied by alpha
    value_range: tuple[float, ...] = (-1.0, 1.0)   # decoder output range mapped to [0, 255]

    @property
    def mode(self) -> str:
        return "RGBA" if self.channels == 4 else "RGB"


@dataclass(frozen=True)
class LatentSpec(_Json):
    """Latent space. The UNet sees z = (mean(E(x)) - shift) * scale; the decoder gets
    z / scale + shift (Rombach et al. 2022 scale latents to unit variance, §4.3.2)."""

    channels: int = 4
    factor: int = 4                        # pixels per latent cell along each side
    width: int = 8
    height: int = 8
    scale: float = 1.0
    shift: float = 0.0
    dynamic_size: bool = True              # the UNet and VAE accept other multiples of `factor`
    # [C + 1, 3]: RGB in [-1, 1] ~ [z, 1] @ preview_rgb, a least-squares fit made at export;
    # workers stream previews with it instead of running the decoder.
    preview_rgb: tuple[tuple[float, ...], ...] = ()


@dataclass(frozen=True)
class ScheduleSpec(_Json):
    """The training noise process. `edm`: continuous sigma in [sigma_min, sigma_max]
    (Karras et al. 2022). `discrete`: a VP beta schedule over `num_train_timesteps`
    (Ho et al. 2020), whose sigmas are sqrt((1 - abar) / abar)."""

    kind: str = "edm"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 1.0
    rho: float = 7.0
    beta_schedule: str | None = None       # "linear", "scaled_linear", "cosine"
    beta_start: float | None = None
    beta_end: float | None = None
    num_train_timesteps: int | None = None
    timestep_spacing: str | None = None    # "linspace", "leading", "trailing" (discrete only)
    steps_offset: int = 0


@dataclass(frozen=True)
class UNetSpec(_Json):
    """The denoiser network's I/O conventions.

    Inputs are named: `sample` [B,C,h,w] float32, the time input (`sigma` [B] float32 for
    `time_input="sigma"`, `timestep` [B] float32 for "timestep"), then the conditioning
    inputs listed in `cond_inputs` in order (e.g. `encoder_hidden_states` [B,L,D],
    `encoder_attention_mask` [B,L], `style` [B] int64). Output `out` [B,C,h,w] is x0, eps or
    v as `prediction` says."""

    prediction: str = "x0"
    time_input: str = "sigma"
    cond_inputs: tuple[str, ...] = ("encoder_hidden_states",)
    max_batch: int = 16                    # largest batch the TensorRT profiles cover
    padding_modes: tuple[str, ...] = ("zeros",)   # ("zeros", "circular") when a tiling file exists
    latent_multiple: int = 1               # latent sides must be multiples of this (2 ** downsamplings)
    # A consistency-distilled network (docs/MODEL.md, "Fast mode"): its x0 output is the end point
    # of the sampling ODE, so only consistency samplers (`lcm`) draw with it, and ONLY they do.
    # A `guidance` cond input takes the guidance scale: one row a step, no unconditional rows.
    consistency: bool = False
    guidance_range: tuple[float, ...] = ()  # [low, high] of the scales a `guidance` input was trained on

    @property
    def guidance_input(self) -> bool:
        """The network takes the guidance scale as its `guidance` input [B] f32 (guidance built in)."""
        return "guidance" in self.cond_inputs


@dataclass(frozen=True)
class TextEncoderSpec(_Json):
    """Prompt -> token states. The ONNX file takes `input_ids` and `attention_mask`
    ([B, max_tokens] int64) and returns `last_hidden_state` [B, max_tokens, hidden_size]."""

    kind: str = "sentence-transformer"     # or "clip"
    name: str = "all-MiniLM-L6-v2"
    max_tokens: int = 24
    hidden_size: int = 384
    pooling: str = "none"                  # the UNet sees every token state, unpooled
    pad_to_max: bool = True
    pad_token_id: int = 0
    uncond_prompt: str = ""                # classifier-free guidance's unconditional input


@dataclass(frozen=True)
class Defaults(_Json):
    """What a job that leaves these out gets; a manifest without them gets the library's."""

    sampler: str = DEFAULT_SAMPLER
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    schedule: str = "karras"


@dataclass(frozen=True)
class SizeSpec(_Json):
    """The image sizes a version makes well; its native size is `image.width` x `image.height`.

    A network that accepts other shapes (`latent.dynamic_size`) still draws well only near the
    sizes it was trained at: the 32² emoji model asked for 128² paints a maze texture. A
    manifest without this section supports its native size, and when `latent.dynamic_size`,
    any smaller one (see :meth:`Manifest.supported_sizes`)."""

    max_side: int = 0                      # largest width or height it makes well, in pixels
    # sizes other than the native one: each side a multiple of the size step, up to max_side
    other_sizes: bool = False


@dataclass(frozen=True)
class UpscalerSpec(_Json):
    """A super-resolution version (docs/MODEL_REPOSITORY.md, "Upscalers"): an EDM chain on the
    residual HR - up over the bicubic upsample of the input (diffusion/upscale.py).

    `upscaler.onnx` maps (sample, sigma, low_res, aug_level) -> x0 of the residual, EDM
    preconditioning inside; `upscaler_fast.onnx` (optional) maps low_res -> residual."""

    factor: int = 4
    sigma_min: float = 0.002
    sigma_max: float = 1.0
    sigma_data: float = 0.5                # inside the graph's preconditioning; stated for readers
    rho: float = 7.0
    aug_level: float = 0.0                 # noise-conditioning augmentation, fixed at inference
    default_steps: int = 4
    size_multiple: int = 8                 # HR sides the networks take are multiples of this
    max_input_side: int = 512              # largest input (LR) width or height accepted
    tile: int = 64                         # LR tile side: larger inputs run in overlapping tiles
    tile_overlap: int = 16                 # LR pixels neighbouring tiles share

    def problems(self) -> list[str]:
        out = []
        if self.factor < 2:
            out.append(f"factor must be >= 2, got {self.factor}")
        if not 0 < self.sigma_min < self.sigma_max:
            out.append(f"needs 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.sigma_data <= 0 or self.rho <= 0:
            out.append("sigma_data and rho must be > 0")
        if self.aug_level < 0:
            out.append(f"aug_level must be >= 0, got {self.aug_level}")
        if self.default_steps < 1:
            out.append(f"default_steps must be >= 1, got {self.default_steps}")
        if self.size_multiple < 1 or self.max_input_side < 1:
            out.append("size_multiple and max_input_side must be >= 1")
        elif (self.tile * self.factor) % self.size_multiple:
            out.append(f"tile x factor ({self.tile} x {self.factor}) must be a multiple of size_multiple "
                       f"{self.size_multiple}")
        if self.tile < 1 or not 0 <= 2 * self.tile_overlap < self.tile:
            out.append(f"needs tile >= 1 and 0 <= 2 x tile_overlap < tile, got {self.tile}, {self.tile_overlap}")
        return out


@dataclass(frozen=True)
class ConceptSpec(_Json):
    """An output concept classifier version (docs/MODEL_REPOSITORY.md, "Concept classifiers").

    `concept_classifier.onnx` maps `image` [B,4,S,S] f32 (premultiplied RGBA in [-1, 1],
    S = `image_size`) to `logits` [B, len(concepts)]; an image shows concept i when
    sigmoid(logits[i]) >= thresholds[i] (chosen on held-out images: the version's EVAL.md)."""

    concepts: tuple[str, ...] = ()
    thresholds: tuple[float, ...] = ()
    image_size: int = 32

    def problems(self) -> list[str]:
        out = []
        if not self.concepts or len(set(self.concepts)) != len(self.concepts):
            out.append("concepts must be a non-empty list of distinct names")
        if len(self.thresholds) != len(self.concepts):
            out.append(f"one threshold a concept: {len(self.concepts)} concepts, {len(self.thresholds)} thresholds")
        if any(not 0.0 < t < 1.0 for t in self.thresholds):
            out.append("thresholds are probabilities strictly between 0 and 1")
        if self.image_size < 1:
            out.append(f"image_size must be >= 1, got {self.image_size}")
        return out

    def threshold_of(self) -> dict[str, float]:
        return dict(zip(self.concepts, self.thresholds, strict=True))


@dataclass(frozen=True)
class FileEntry(_Json):
    """One file of the version. Only files listed here are loaded, and only when their bytes
    hash to `sha256`."""

    sha256: str
    bytes: int
    role: str = ""                         # one of ROLES, "external_data" or "report"
    variant: str = "default"               # "default", "fp16", "optimized", "tiling", ...
    precision: str = "fp32"


@dataclass(frozen=True)
class OnnxSpec(_Json):
    opset: int = 18
    ir_version: int = 0
    exporter: str = ""
    producer: str = ""


@dataclass(frozen=True)
class Manifest(_Json):
    name: str
    version: str
    schema_version: int = SCHEMA_VERSION
    description: str = ""
    created: str = ""                      # ISO date of the export
    source: str = ""                       # "atelier" or "diffusers"
    image: ImageSpec = field(default_factory=ImageSpec)
    latent: LatentSpec = field(default_factory=LatentSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    unet: UNetSpec = field(default_factory=UNetSpec)
    text_encoder: TextEncoderSpec = field(default_factory=TextEncoderSpec)
    styles: tuple[str, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    sizes: SizeSpec | None = None          # None: derived from `image` and `latent.dynamic_size`
    # A super-resolution version; it then holds no unet, VAE, text encoder or styles.
    upscaler: UpscalerSpec | None = None
    # An output concept classifier; it then holds no unet, VAE, text encoder, upscaler or styles.
    concepts: ConceptSpec | None = None
    # role -> file of the default variant; variant -> role -> file (for fp16, tiling, ...)
    components: dict[str, str] = field(default_factory=dict)
    variants: dict[str, dict[str, str]] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)
    onnx: OnnxSpec = field(default_factory=OnnxSpec)
    data_card: dict[str, Any] = field(default_factory=dict)
    licenses: tuple[dict[str, Any], ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)

    # --- JSON

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ManifestError("manifest must be a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema_version {version!r} is not supported (this reader knows {SCHEMA_VERSION})"
            )
        manifest = cls.from_dict(data)
        manifest.check()
        return manifest

    # --- lookups

    def file_for(self, role: str, variant: str = "default") -> str:
        """File that plays `role` in `variant`, falling back to the default variant."""
        if variant != "default":
            chosen = self.variants.get(variant, {}).get(role)
            if chosen:
                return chosen
        try:
            return self.components[role]
        except KeyError:
            raise ManifestError(f"model {self.name}/{self.version} has no {role!r} component") from None

    def supported_sizes(self) -> SizeSpec:
        """The sizes this version supports: as stated, or derived from the native size (the largest
        side it was trained at) and whether its network accepts other shapes."""
        native_side = max(self.image.width, self.image.height)
        if self.sizes is None:
            return SizeSpec(max_side=native_side, other_sizes=self.latent.dynamic_size)
        return SizeSpec(max_side=max(self.sizes.max_side, native_side), other_sizes=self.sizes.other_sizes)

    # --- validation

    def check(self) -> None:
        """Refuse a manifest that contradicts itself; names the offending field."""
        where = f"manifest of {self.name}/{self.version}"
        if self.unet.prediction not in PREDICTION_TYPES:
            raise ManifestError(f"{where}: unet.prediction must be one of {PREDICTION_TYPES}")
        if self.unet.time_input not in TIME_INPUTS:
            raise ManifestError(f"{where}: unet.time_input must be one of {TIME_INPUTS}")
        if self.schedule.kind not in SCHEDULE_KINDS:
            raise ManifestError(f"{where}: schedule.kind must be one of {SCHEDULE_KINDS}")
        if self.schedule.kind == "discrete" and not (self.schedule.beta_schedule and self.schedule.num_train_timesteps):
            raise ManifestError(f"{where}: a discrete schedule needs beta_schedule and num_train_timesteps")
        if self.unet.consistency and (self.unet.prediction, self.unet.time_input) != ("x0", "sigma"):
            raise ManifestError(f"{where}: a consistency unet maps (sample, sigma) to x0: "
                                "prediction x0, time_input sigma")
        if self.unet.guidance_range and (len(self.unet.guidance_range) != 2 or not self.unet.guidance_input
                                         or self.unet.guidance_range[0] > self.unet.guidance_range[1]):
            raise ManifestError(f"{where}: unet.guidance_range is [low, high] of a network with a `guidance` input")
        if self.unet.time_input == "timestep" and self.schedule.kind != "discrete":
            raise ManifestError(f"{where}: a timestep input needs a discrete schedule")
        if self.image.channels not in (3, 4):
            raise ManifestError(f"{where}: image.channels must be 3 (RGB) or 4 (RGBA)")
        if self.latent.scale == 0:
            raise ManifestError(f"{where}: latent.scale must not be 0")
        if self.sizes is not None and self.sizes.other_sizes and not self.latent.dynamic_size:
            raise ManifestError(f"{where}: sizes.other_sizes needs latent.dynamic_size (a network taking other shapes)")
        for name, entry in self.files.items():
            if "/" in name or "\\" in name or name.startswith(".") or name == MANIFEST_NAME:
                raise ManifestError(f"{where}: file name {name!r} must be a plain name inside the version folder")
            if len(entry.sha256) != 64 or any(c not in "0123456789abcdef" for c in entry.sha256):
                raise ManifestError(f"{where}: files.{name}.sha256 is not a lowercase hex sha256")
        self._check_roles(where)
        referenced = list(self.components.values()) + [f for v in self.variants.values() for f in v.values()]
        for name in referenced:
            if name not in self.files:
                raise ManifestError(f"{where}: component file {name!r} is not listed under files")

    def _check_roles(self, where: str) -> None:
        roles = set(self.components) | {r for v in self.variants.values() for r in v}
        unknown = sorted(roles - set(ROLES))
        if unknown:
            raise ManifestError(f"{where}: unknown component role(s) {unknown}; roles are {ROLES}")
        if self.concepts is not None:
            self._check_concepts(where, roles)
            return
        stray = sorted(roles & set(CONCEPT_ROLES))
        if stray:
            raise ManifestError(f"{where}: component(s) {stray} need a `concepts` section")
        if self.upscaler is None:
            stray = sorted(roles & set(UPSCALER_ROLES))
            if stray:
                raise ManifestError(f"{where}: component(s) {stray} need an `upscaler` section")
            return
        problems = self.upscaler.problems()
        if problems:
            raise ManifestError(f"{where}: upscaler: " + "; ".join(problems))
        base = sorted(roles & set(BASE_ROLES))
        if base:
            raise ManifestError(f"{where}: an upscaler version holds no {base}: "
                                f"its only networks are {UPSCALER_ROLES}")
        if self.styles:
            raise ManifestError(f"{where}: an upscaler version has no styles")
        if "upscaler" not in self.components:
            raise ManifestError(f"{where}: an upscaler version needs an `upscaler` component")

    def _check_concepts(self, where: str, roles: set[str]) -> None:
        problems = self.concepts.problems()
        if problems:
            raise ManifestError(f"{where}: concepts: " + "; ".join(problems))
        others = sorted(roles - set(CONCEPT_ROLES))
        if others or self.upscaler is not None or self.styles:
            raise ManifestError(f"{where}: a concept classifier version holds only {CONCEPT_ROLES}, no "
                                f"{others or 'upscaler or styles'}")
        if "concept_classifier" not in self.components:
            raise ManifestError(f"{where}: a concept classifier version needs a `concept_classifier` component")
