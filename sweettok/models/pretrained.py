"""Self-contained tokenizer export folders, in the Hugging Face ``save_pretrained`` / ``from_pretrained`` way.

    folder/
      model.safetensors                  weights (our key names)
      config.yaml                        the run's resolved config; MLC prior paths relative to the folder
      priors/spatial.{safetensors,json}  the word graphs the MLC codebooks are rebuilt from (word lists,
      priors/temporal.{safetensors,json} word vectors, edges), copied in at export
      export.json                        format, version and the SHA-256 of every file under priors/

The GCN weights are in ``model.safetensors`` but the code tables are GCN(word vectors, graph), so
the prior files are part of the model: a folder that carries them loads from any directory after
being copied, and rebuilding ``codebook_priors/`` no longer changes an existing export's codes. The
hashes are checked at load; a mismatch is refused. Exports written before this layout (no
``export.json``, prior paths relative to the repository) still load, with a warning. A name that is
not a local folder but looks like ``owner/name`` is fetched from the Hugging Face hub
(``huggingface_hub.snapshot_download``, imported only then; a local cache works offline).

    save_pretrained(model.state_dict(), cfg, "export")    # what the trainer's export_model writes
    model = load_pretrained("export")                      # SweetTok, eval mode, no gradients
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Optional, Union

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from sweettok.config import Config, ProxyConfig, TokenizerConfig, save_config, to_dataclass
from sweettok.permissions import make_shareable
from sweettok.priors.prior import Prior, load_prior, save_prior

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "sweettok-export"
EXPORT_VERSION = 2
MANIFEST_FILE = "export.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
PRIOR_DIR = "priors"
BRANCHES = ("spatial", "temporal")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TRAIN_HINT = ("train one with `bash run_train_stage2.sh` (after run_train_proxy.sh and run_train_stage1.sh) "
              "or `make demo`, which writes outputs/demo/stage2/export")


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _detach_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU tensors for safetensors, which refuses tensors that share storage: tied weights are cloned apart."""
    tensors, seen = {}, set()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        tensors[name] = tensor.clone() if key in seen else tensor.contiguous()
        seen.add(key)
    return tensors


def _resolve_prior(prior: str, directory: Path) -> str:
    """A prior path of the old layout: as given from the cwd, else from the export folder's parents."""
    from sweettok.models.tokenizer_convert import _resolve_prior as resolve  # the rule old exports were read by

    return resolve(prior, directory)


def _needed_priors(state_dict: dict[str, torch.Tensor], cfg: DictConfig, directory: Path) -> dict[str, Prior]:
    """The MLC priors the weights need, read into memory: {branch: Prior} (none for VQ, proxy, generator)."""
    priors: dict[str, Prior] = {}
    if "model" not in cfg or "tokenizer" not in cfg.model:
        return priors
    for branch in BRANCHES:
        qcfg = cfg.model.tokenizer[f"{branch}_quantizer"]
        if qcfg.kind != "mlc" or not any(k.startswith(f"{branch}_quantizer.") for k in state_dict):
            continue
        try:  # ours or an original pickle; written back in our format
            priors[branch] = load_prior(_resolve_prior(qcfg.prior, directory))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"model.tokenizer.{branch}_quantizer.prior: cannot copy it into the export "
                                    f"({err})") from None
    return priors


def _write_priors(priors: dict[str, Prior], cfg: DictConfig, directory: Path) -> dict[str, str]:
    """Write the priors under ``directory/priors`` and point ``cfg`` at them; -> {relative file: SHA-256}."""
    hashes: dict[str, str] = {}
    for branch, prior in priors.items():
        prior.meta = {k: v for k, v in prior.meta.items() if k != "path"}  # no machine path in the export
        relative = f"{PRIOR_DIR}/{branch}"
        for written in save_prior(prior, directory / relative):
            hashes[written.relative_to(directory).as_posix()] = file_sha256(written)
        cfg.model.tokenizer[f"{branch}_quantizer"].prior = relative
    return hashes


def save_pretrained(state_dict: dict[str, torch.Tensor], cfg: DictConfig,
                    directory: Union[str, os.PathLike]) -> Path:
    """Write a self-contained export folder (weights, config, priors, ``export.json``); main process only.

    ``export.json`` is removed first and written last, so an interrupted export is refused at load
    instead of pairing new weights with old priors.
    """
    directory = Path(directory)
    cfg = copy.deepcopy(cfg)  # the caller's config keeps its own prior paths
    priors = _needed_priors(state_dict, cfg, directory)  # read first: they may live in this very folder
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST_FILE).unlink(missing_ok=True)
    shutil.rmtree(directory / PRIOR_DIR, ignore_errors=True)
    hashes = _write_priors(priors, cfg, directory)
    tensors = _detach_tensors(state_dict)
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / WEIGHTS_FILE)
    save_config(cfg, directory / CONFIG_FILE)
    manifest = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "weights": WEIGHTS_FILE,
                "config": CONFIG_FILE, "files": hashes}
    tmp = directory / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, directory / MANIFEST_FILE)
    make_shareable(directory)  # safetensors writes 0600: give teammates the umask's mode
    logger.info("exported %d tensors%s to %s", len(tensors), f" and {len(hashes)} prior files" if hashes else "",
                directory)
    return directory


# ----------------------------------------------------------------------------- finding the folder


def _from_hub(name: str) -> Path:
    """Download (or find in the local cache) the hub repository ``name``; one-line error when it cannot."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{name}: no such local folder, and huggingface_hub (needed to fetch it from the "
                                "hub) is not installed: pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id=name))
    except Exception as err:  # offline, unknown repository, no access: all the same to the user
        reason = " ".join(str(err).split()).split(". ")[0][:200] or type(err).__name__  # its first sentence
        raise FileNotFoundError(f"checkpoint folder {name} not found locally, and the Hugging Face hub could not "
                                f"provide it ({type(err).__name__}: {reason}); {TRAIN_HINT}") from None


def resolve_export(name: Union[str, os.PathLike]) -> Path:
    """Local export folder for ``name``: the folder itself, or a hub id's downloaded snapshot."""
    path = Path(name)
    if not path.is_dir() and not path.exists() and HUB_ID.match(os.fspath(name)):
        path = _from_hub(os.fspath(name))
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder {path} not found (an export holds {WEIGHTS_FILE} + "
                                f"{CONFIG_FILE}): {TRAIN_HINT}")
    missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE) if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a tokenizer export (missing {', '.join(missing)}; an export holds "
                                f"{WEIGHTS_FILE} + {CONFIG_FILE}): {TRAIN_HINT}")
    return path


# ----------------------------------------------------------------------------- reading it back


def read_manifest(directory: Path) -> Optional[dict]:
    """``export.json`` of a folder (None for the old layout); refuses an interrupted or foreign one."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        if (directory / PRIOR_DIR).is_dir():
            raise ValueError(f"{directory} holds {PRIOR_DIR}/ but no {MANIFEST_FILE}: the export was interrupted; "
                             "export the model again")
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); export the model again") from None
    if manifest.get("format") != EXPORT_FORMAT or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"{path} is not a SweetTok export manifest (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > EXPORT_VERSION:
        raise ValueError(f"{path}: export version {manifest['version']} is newer than this sweettok reads "
                         f"({EXPORT_VERSION}); update sweettok")
    return manifest


def verify_export(directory: Path, manifest: dict) -> None:
    """Check every file listed in the manifest against its SHA-256; one-line ValueError on the first mismatch."""
    for relative, want in manifest["files"].items():
        path = directory / relative
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the export (listed in {MANIFEST_FILE}); copy the whole "
                                    "folder")
        got = file_sha256(path)
        if got != want:
            raise ValueError(f"{path} does not match the SHA-256 recorded in {directory / MANIFEST_FILE} "
                             f"({got[:12]}... vs {want[:12]}...): the prior changed after export and would change "
                             "the codes; restore the file or export the model again")


def read_export_config(directory: Path) -> DictConfig:
    """The export's config with its MLC prior paths made absolute (hashes checked; old layout resolved)."""
    from sweettok.config import load_config

    cfg = load_config(directory / CONFIG_FILE)
    manifest = read_manifest(directory)
    if manifest is not None:
        verify_export(directory, manifest)
    for branch in BRANCHES:
        qcfg = cfg.model.tokenizer[f"{branch}_quantizer"]
        if qcfg.kind != "mlc":
            continue
        if manifest is not None:
            qcfg.prior = str((directory / qcfg.prior).resolve())
        else:
            qcfg.prior = _resolve_prior(qcfg.prior, directory)
    if manifest is None:
        logger.warning("%s is an export of the old layout (priors outside the folder, no hashes); make it "
                       "self-contained with sweettok.from_pretrained(folder).save_pretrained(new_folder)", directory)
    return cfg


def load_pretrained(name: Union[str, os.PathLike], map_location: str = "cpu"):
    """Load an export folder (or hub id) -> SweetTok in eval mode with ``requires_grad`` off everywhere.

    ``model.run_config`` keeps the export's config (absolute prior paths), so
    ``model.save_pretrained(folder)`` writes a complete copy.
    """
    from safetensors.torch import load_file

    from sweettok.models.tokenizer_convert import build_and_load, build_from_original, is_original_layout

    directory = resolve_export(name)
    cfg = read_export_config(directory)
    state_dict = load_file(str(directory / WEIGHTS_FILE))
    tokenizer: TokenizerConfig = to_dataclass(cfg.model.tokenizer)
    proxy: ProxyConfig = to_dataclass(cfg.model.proxy)
    if is_original_layout(state_dict):
        model = build_from_original(state_dict, tokenizer, proxy)
    else:
        model = build_and_load(state_dict, tokenizer, proxy, str(directory / WEIGHTS_FILE))
    model = model.to(map_location).eval().requires_grad_(False)
    model.run_config = cfg
    return model


def model_config(model) -> DictConfig:
    """The full config to export ``model`` with: the one it was loaded with, else defaults around its own sections."""
    if getattr(model, "run_config", None) is not None:
        return model.run_config
    cfg = OmegaConf.structured(Config)
    cfg.model.tokenizer = OmegaConf.structured(model.cfg)
    cfg.model.proxy = OmegaConf.structured(model.proxy_cfg)
    cfg.dataset.num_frames, cfg.dataset.resolution = model.cfg.num_frames, model.cfg.image_size
    return cfg
