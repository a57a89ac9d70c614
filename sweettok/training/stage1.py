"""Stage 1: the DQAE tokenizer learns to predict the frozen proxy tokenizer's codes.

    codes = proxy.encode(x)                      # fp32, outside autocast, no grad
    L = CE(SweetTok(x) logits, codes) + quantizer_weight * quantizer loss

Everything in ``SweetTok`` trains. Optional spatial-first curriculum: for the first
``training.static_curriculum_steps`` steps every clip is its first frame repeated (a static clip),
since the original's spatial pre-training file has no released recipe. When
``model.spatial_pretrain`` names that file, its tensors are mapped through the converter and the
load reports how many matched, and which did not and why; nothing is skipped silently.
With ``training.proxy_code_cache_clips=N`` the codes of up to N training clips are kept and looked
up by the clip's bytes (``ProxyCodeMemo``): the proxy is frozen, so a clip's codes never change.
Evaluation: proxy-code accuracy and the PSNR of the argmax codes decoded by the proxy (and, as the
ceiling, of the proxy's own codes) on the fixed validation subset.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from sweettok.config import ConfigError, to_dataclass
from sweettok.eval.codebook_stats import CodebookStats
from sweettok.losses.stage1 import Stage1Loss
from sweettok.models.proxy import ProxyTokenizer
from sweettok.models.proxy_convert import load_proxy_checkpoint
from sweettok.models.tokenizer import SweetTok
from sweettok.models.tokenizer_convert import is_original_layout, original_to_ours
from sweettok.priors.prior import read_original_pickle
from sweettok.training.optim import build_optimizer
from sweettok.training.recon_eval import (
    FVDCache, ReconstructionMetrics, build_eval_loader, build_train_loader, fixed_clips, save_panel,
)
from sweettok.training.schedules import build_scheduler
from sweettok.training.task import Task

logger = logging.getLogger(__name__)

STAGE0_HINT = ("train one with stage 0 (`bash run_train_proxy.sh`, which writes outputs/demo/proxy/export on CPU), "
               "or download the OmniTokenizer VQ checkpoint imagenet_ucf.ckpt (see checkpoints/README)")


def check_proxy_weights(cfg) -> str:
    """``model.proxy.weights``, checked to be set and to exist (stages 1 and 2 need the frozen proxy)."""
    path = cfg.model.proxy.weights
    if not path:
        raise ConfigError(f"model.proxy.weights is empty: stage {cfg.experiment.train_stage} needs the proxy "
                          f"tokenizer; {STAGE0_HINT}, then pass model.proxy.weights=<export folder or file>")
    if not Path(path).exists():
        raise FileNotFoundError(f"model.proxy.weights: {path} not found (relative to {Path.cwd()}); {STAGE0_HINT}")
    return path


def load_frozen_proxy(cfg, with_encoder: bool = True) -> ProxyTokenizer:
    """The proxy named by ``model.proxy.weights``, frozen; a clear error when it is not set or missing."""
    path = check_proxy_weights(cfg)
    return load_proxy_checkpoint(path, to_dataclass(cfg.model.proxy), with_encoder=with_encoder, freeze=True)


def read_state_dict(path: str, key: str = "weights") -> dict[str, Tensor]:
    """A weights file as a flat state dict: safetensors, or a torch file (weights only, maybe nested).

    ``key`` is the config key that named the file, for the error messages.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}: {path} not found (relative to {Path.cwd()})")
    if path.endswith(".safetensors"):
        return load_file(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(f"{key}: {path}: refused to unpickle with weights_only=True, the file names code to run "
                          f"({_first_line(err)}); convert it to safetensors where you trust it") from None
    for key in ("state_dict", "model"):
        if isinstance(raw, Mapping) and key in raw and isinstance(raw[key], Mapping):
            raw = raw[key]
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(raw).__name__}")
    return {k: v for k, v in raw.items() if isinstance(v, Tensor)}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_prior_pickles(cfg) -> None:
    """Refuse, before any model is built, an original prior pickle that names code; the error names key and file."""
    for side in ("spatial", "temporal"):
        quantizer = cfg.model.tokenizer[f"{side}_quantizer"]
        path = Path(quantizer.prior)
        if quantizer.kind != "mlc" or path.suffix not in (".pkl", ".pickle", ".pt") or not path.is_file():
            continue
        try:
            read_original_pickle(path)
        except pickle.UnpicklingError as err:
            raise ConfigError(f"model.tokenizer.{side}_quantizer.prior: {path}: refused to unpickle, the file names "
                              f"code to run ({_first_line(err)}); use a prior built by "
                              "scripts/build_codebook_priors.py or the original release's file") from None


def load_partial(model: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> dict[str, list[str]]:
    """Load the tensors of ``state_dict`` that fit ``model`` by name and shape; log what did not and why."""
    if is_original_layout(state_dict):
        state_dict = original_to_ours(state_dict)
    expected = model.state_dict()
    report: dict[str, list[str]] = {"matched": [], "shape": [], "name": []}
    for key, value in state_dict.items():
        if key not in expected:
            report["name"].append(key)
        elif tuple(value.shape) != tuple(expected[key].shape):
            report["shape"].append(f"{key} (file {tuple(value.shape)}, model {tuple(expected[key].shape)})")
        else:
            report["matched"].append(key)
    report["kept_init"] = sorted(set(expected) - set(report["matched"]))
    model.load_state_dict({k: state_dict[k] for k in report["matched"]}, strict=False)
    logger.info("%s: loaded %d of %d tensors of the file (the model has %d); %d skipped for their shape, "
                "%d for their name (not in the model); %d model tensors keep their initialisation",
                source, len(report["matched"]), len(state_dict), len(expected), len(report["shape"]),
                len(report["name"]), len(report["kept_init"]))
    for why in ("shape", "name", "kept_init"):
        if report[why]:
            logger.info("%s: %s: %s%s", source, {"shape": "shape mismatch", "name": "unknown name",
                                                 "kept_init": "model tensors not loaded"}[why],
                        ", ".join(report[why][:20]), " ..." if len(report[why]) > 20 else "")
    return report


class ProxyCodeMemo:
    """The frozen proxy's codes of clips seen before, looked up by the SHA-1 of the clip's bytes.

    A clip missing from the memo is encoded on its own, never with the rest of its batch, so its
    codes do not depend on which clips it came with or on whether it was remembered: a resumed run,
    whose memo starts empty, gets the same codes as the run it continues. At most ``max_clips`` are
    kept (the oldest go first). Hashing needs the batch on the host: worth it on a CPU when clips
    repeat (no random crops), not on a GPU where the proxy's forward is cheap.
    """

    def __init__(self, proxy: ProxyTokenizer, max_clips: int) -> None:
        if max_clips < 1:
            raise ValueError(f"ProxyCodeMemo needs max_clips >= 1, got {max_clips}")
        self.proxy, self.max_clips = proxy, max_clips
        self.codes: OrderedDict[bytes, Tensor] = OrderedDict()
        self.hits = self.lookups = 0

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """(B, C, T, H, W) -> the proxy's codes (B, T', H', W'), each clip encoded alone the first time."""
        host = video.detach().cpu().contiguous()
        keys = [hashlib.sha1(memoryview(clip.view(torch.uint8).numpy()).cast("B")).digest() for clip in host]
        out = []
        for i, key in enumerate(keys):
            codes = self.codes.get(key)
            if codes is None:
                codes = self.proxy.encode(video[i : i + 1])[0]
                self.codes[key] = codes
            else:
                self.hits += 1
            out.append(codes)
        self.lookups += len(keys)
        while len(self.codes) > self.max_clips:
            self.codes.popitem(last=False)
        return torch.stack(out)

    @property
    def hit_rate(self) -> float:
        """Share of the clips looked up so far whose codes were remembered."""
        return self.hits / max(self.lookups, 1)


class Stage1Task(Task):
    """SweetTok logits vs the frozen proxy's codes (cross-entropy + quantizer loss)."""

    def build(self) -> None:
        cfg = self.cfg
        self.proxy = load_frozen_proxy(cfg).to(self.accelerator.device)
        check_prior_pickles(cfg)
        model = SweetTok(to_dataclass(cfg.model.tokenizer), to_dataclass(cfg.model.proxy))
        if cfg.model.spatial_pretrain:
            load_partial(model, read_state_dict(cfg.model.spatial_pretrain, "model.spatial_pretrain"),
                         f"model.spatial_pretrain {cfg.model.spatial_pretrain}")
        if cfg.experiment.init_weight:
            raise ConfigError("experiment.init_weight is not used by stage 1 (use model.spatial_pretrain); got "
                              f"{cfg.experiment.init_weight!r}")
        self.models["model"] = model
        self.optimizers["model"] = build_optimizer(model, to_dataclass(cfg.optimizer))
        self.schedulers["model"] = build_scheduler(self.optimizers["model"], to_dataclass(cfg.lr_scheduler),
                                                   total_steps=cfg.training.max_train_steps)
        self.loss = Stage1Loss(to_dataclass(cfg.losses))
        self.train_dataloader = build_train_loader(cfg)
        self.eval_dataloader, eval_set = build_eval_loader(cfg)
        self.logged_clips = fixed_clips(eval_set, cfg.training.num_generate)
        self.fvd = FVDCache(cfg, self.accelerator.device)
        clips = cfg.training.proxy_code_cache_clips
        self.proxy_codes = ProxyCodeMemo(self.proxy, clips) if clips > 0 else None

    def train_step(self, batch: Any, step: int) -> dict[str, Any]:
        video = batch["video"]
        if step < self.cfg.training.static_curriculum_steps:
            video = video[:, :, :1].expand_as(video).contiguous()  # static clip: first frame repeated
        # (B, T', H', W'), fp32, no grad
        codes = self.proxy_codes.encode(video) if self.proxy_codes is not None else self.proxy.encode(video)
        logits, out = self.models["model"](video)
        loss, logs = self.loss(logits, codes, out.loss)
        if self.proxy_codes is not None:
            logs["proxy_code_cache_hit_rate"] = self.proxy_codes.hit_rate
        self.backward(loss, logs)
        self.optimizer_step("model")
        logs.update({f"train/{k}": v for k, v in out.logs.items()})  # codebook usage/perplexity per half
        return logs

    def _reconstruct(self, video: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(proxy codes, predicted codes, indices, pixels of the predicted codes) of a clip batch."""
        codes = self.proxy.encode(video)
        logits, out = self.unwrap("model")(video)
        predicted = logits.argmax(dim=1)
        return codes, predicted, out.indices, self.proxy.decode_codes(predicted)

    def evaluate(self, step: int) -> dict[str, float]:
        metrics = ReconstructionMetrics(self.accelerator, self.fvd.get())
        stats = CodebookStats(dict(zip(("spatial_first", "spatial_second", "temporal_first", "temporal_second"),
                                       self._sub_codebook_sizes())))
        for batch in self.eval_dataloader:
            video = batch["video"]
            codes, predicted, indices, pixels = self._reconstruct(video)
            metrics.add("code_accuracy", (predicted == codes).float().flatten(1).mean(1))
            metrics.add_videos(video, pixels)
            metrics.add_videos(video, self.proxy.decode_codes(codes), prefix="proxy_")
            stats.update(dict(zip(stats.counts, self.unwrap("model").layout.unpack(indices))))
        stats.reduce_across_ranks()
        return {**metrics.compute(), **stats.compute()}

    def _sub_codebook_sizes(self) -> tuple[int, int, int, int]:
        s, t = self.unwrap("model").spatial_quantizer, self.unwrap("model").temporal_quantizer
        return s.first_size, s.second_size, t.first_size, t.second_size

    def generate(self, step: int) -> None:
        video = self.logged_clips.to(self.accelerator.device)
        save_panel(self, video, self._reconstruct(video)[3], step, "stage1_reconstruction")
