"""Does the decoupling hold? Appearance and motion labels predicted from spatial or temporal tokens alone.

On the demo set each clip's JSON sidecar names its appearance (``noun`` = shape, ``adjective`` =
colour) and its motion (``verb`` = direction: rise / fall / slide / orbit, ``adverb`` = speed).
Every clip of two splits is tokenized (its evaluation clip, as the export's dataset settings cut
it) and described by features of **one** token set, spatial or temporal:

* ``mean``: the mean over latents of the branch's quantised latents (the codes the decoder reads),
  ``(B, 2 * code_dim)``; no position information;
* ``bag``: bag of codes, the normalised histograms of the branch's first- and second-POS indices
  (e.g. adjectives and nouns), concatenated; no position information;
* ``flat``: all quantised latents of the branch, concatenated in latent order (keeps position).

Features are standardised with the training split's mean and std. Two read-outs, both fitted on
the training split and scored on the test split:

* few-shot: nearest centroid (Euclidean) from ``k`` random training clips per label value,
  accuracy averaged over ``draws`` seeded draws;
* linear probe: multinomial logistic regression (torch, full batch, Adam, L2 penalty).

``distinct`` counts the different token sequences per split and branch (1 = the branch gives every
clip the same tokens, so nothing can be read from it). Chance is reported twice: uniform (1 / number of values) and majority (always the most frequent
training value, scored on the test split). A decoupled tokenizer reads appearance well from
spatial tokens and motion well from temporal tokens, and each near chance from the other set.

    result = run_probe(model, dataset_cfg)      # model: SweetTok; dataset_cfg: the export's dataset section
    print(format_probe_markdown(result))
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from sweettok.api import dataset_section, read_video_clip
from sweettok.data.lists import load_entries

logger = logging.getLogger(__name__)

ATTRIBUTES = {"shape": "noun", "colour": "adjective", "direction": "verb", "speed": "adverb"}  # name -> sidecar key
GROUPS = {"appearance": ("shape", "colour"), "motion": ("direction", "speed")}
TOKEN_SETS = ("spatial", "temporal")
FEATURE_KINDS = ("mean", "bag", "flat")
SPLITS = {"train": ("train_list", "train_split"), "eval": ("eval_list", "eval_split"),
          "test": ("eval_list", "eval_split"), "val": ("eval_list", "eval_split")}


# ----------------------------------------------------------------------------- data


def labelled_clips(dataset: Any, split: str) -> list[tuple[str, dict]]:
    """(video path, sidecar dict) of every clip of ``split`` ('train' or 'eval'); sidecars must exist."""
    data = dataset_section(dataset)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    list_key, folder_key = SPLITS[split]
    entries, _ = load_entries(getattr(data, list_key), data.root, data.list_format, getattr(data, folder_key))
    clips = []
    for entry in entries:
        path = os.path.join(data.root, entry.path)
        sidecar = Path(path).with_suffix(".json")
        if not sidecar.is_file():
            raise FileNotFoundError(f"label sidecar {sidecar} not found: the probe needs the demo set's JSON "
                                    "sidecars (python scripts/make_demo_dataset.py --out data/demo)")
        meta = json.loads(sidecar.read_text())
        missing = [key for key in ATTRIBUTES.values() if key not in meta]
        if missing:
            raise ValueError(f"label sidecar {sidecar} lacks {missing}")
        clips.append((path, meta))
    return clips


@torch.no_grad()
def token_features(model, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Clips (B, 3, T, H, W) -> {"<kind>/<token set>": (B, D)} for every feature kind."""
    out = model.encode(video)
    spatial, temporal = (z.float() for z in out.latents)  # (B, Ls, Ds), (B, Lt, Dt)
    layout = model.layout
    s_first, s_second, t_first, t_second = layout.unpack(out.indices)
    bags = {"spatial": (_histogram(s_first, layout.spatial_first_size),
                        _histogram(s_second, layout.spatial_second_size)),
            "temporal": (_histogram(t_first, layout.temporal_first_size),
                         _histogram(t_second, layout.temporal_second_size))}
    features = {}
    for name, latents in (("spatial", spatial), ("temporal", temporal)):
        features[f"mean/{name}"] = latents.mean(dim=1)
        features[f"bag/{name}"] = torch.cat(bags[name], dim=1)
        features[f"flat/{name}"] = latents.flatten(1)
    return {k: v.cpu() for k, v in features.items()}


def _histogram(indices: torch.Tensor, size: int) -> torch.Tensor:
    """Indices (B, ...) -> normalised counts (B, size)."""
    flat = indices.reshape(indices.shape[0], -1)
    counts = torch.zeros(flat.shape[0], size, device=flat.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float))
    return counts / flat.shape[1]


def extract_features(model, dataset: Any, paths: Sequence[str], batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Tokenize every clip of ``paths`` (evaluation clips) -> {"<kind>/<token set>": (N, D)}."""
    device = next(model.parameters()).device
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(paths), batch_size):
        batch = torch.cat([read_video_clip(p, dataset)[0] for p in paths[start:start + batch_size]])
        for key, value in token_features(model, batch.to(device)).items():
            chunks.setdefault(key, []).append(value)
        logger.info("probe: tokenized %d / %d clips", min(start + batch_size, len(paths)), len(paths))
    return {key: torch.cat(parts) for key, parts in chunks.items()}


# ----------------------------------------------------------------------------- read-outs


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z-score both with the training mean and std (constant features become 0)."""
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def few_shot_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                      shots: int, draws: int = 20, seed: int = 0) -> float:
    """Nearest-centroid accuracy from ``shots`` random training clips per label, averaged over ``draws``."""
    classes = torch.unique(train_y)
    generator = torch.Generator().manual_seed(seed)
    accuracies = []
    for _ in range(draws):
        centroids = []
        for c in classes:
            pool = torch.nonzero(train_y == c).flatten()
            pick = pool[torch.randperm(len(pool), generator=generator)[:shots]]
            centroids.append(train_x[pick].mean(0))
        distances = torch.cdist(test_x, torch.stack(centroids))  # (N_test, C)
        accuracies.append((classes[distances.argmin(1)] == test_y).float().mean().item())
    return sum(accuracies) / len(accuracies)


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                          steps: int = 300, learning_rate: float = 0.05, weight_decay: float = 1e-3,
                          seed: int = 0) -> float:
    """Multinomial logistic regression (full batch, Adam, L2 penalty on the weights) -> test accuracy."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(train_x.shape[1], num_classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=learning_rate)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            loss = F.cross_entropy(train_x @ weight + bias, train_y) + weight_decay * weight.pow(2).sum()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return ((test_x @ weight + bias).argmax(1) == test_y).float().mean().item()


def encode_labels(train: Sequence[str], test: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """String labels -> int tensors over the sorted values of both splits."""
    values = sorted(set(train) | set(test))
    index = {v: i for i, v in enumerate(values)}
    return (torch.tensor([index[v] for v in train]), torch.tensor([index[v] for v in test]), values)


def probe_features(train_features: Mapping[str, torch.Tensor], train_labels: Mapping[str, Sequence[str]],
                   test_features: Mapping[str, torch.Tensor], test_labels: Mapping[str, Sequence[str]],
                   shots: Sequence[int] = (1, 5), draws: int = 20, seed: int = 0, linear_steps: int = 300) -> dict:
    """Every feature set x attribute: few-shot and linear-probe accuracies, plus chance levels.

    Features are keyed "<kind>/<token set>" (as ``token_features``); labels by attribute name.
    Returns {"results": {kind: {token set: {attribute: {read-out: accuracy}}}}, "chance": ..., "values": ...}.
    """
    results: dict = {}
    chance, values_of = {}, {}
    encoded = {}
    for attribute in train_labels:
        train_y, test_y, values = encode_labels(train_labels[attribute], test_labels[attribute])
        encoded[attribute] = (train_y, test_y)
        majority = torch.bincount(train_y, minlength=len(values)).argmax()
        chance[attribute] = {"uniform": 1.0 / len(values), "majority": (test_y == majority).float().mean().item()}
        values_of[attribute] = values
    for key in sorted(train_features):
        kind, token_set = key.split("/")
        train_x, test_x = standardise(train_features[key].float(), test_features[key].float())
        scores = results.setdefault(kind, {}).setdefault(token_set, {})
        for attribute, (train_y, test_y) in encoded.items():
            row = {f"few_shot_{k}": few_shot_accuracy(train_x, train_y, test_x, test_y, k, draws, seed) for k in shots}
            row["linear"] = linear_probe_accuracy(train_x, train_y, test_x, test_y, steps=linear_steps, seed=seed)
            scores[attribute] = row
    return {"results": results, "chance": chance, "values": values_of}


def group_table(result: dict) -> dict:
    """The 2x2 tables: {kind: {read-out: {group: {token set: mean accuracy over the group's attributes}}}}."""
    table: dict = {}
    for kind, sets in result["results"].items():
        readouts = next(iter(next(iter(sets.values())).values())).keys()
        for readout in readouts:
            cell = table.setdefault(kind, {}).setdefault(readout, {})
            for group, attributes in GROUPS.items():
                present = [a for a in attributes if a in result["chance"]]
                cell[group] = {s: sum(sets[s][a][readout] for a in present) / len(present) for s in sets}
                cell[group]["chance"] = sum(result["chance"][a]["uniform"] for a in present) / len(present)
    return table


def distinct_rows(features: torch.Tensor) -> int:
    """Number of different rows: with ``flat`` features, the number of different token sequences."""
    return int(torch.unique(features, dim=0).shape[0])


# ----------------------------------------------------------------------------- the whole probe


def run_probe(model, dataset: Any, split_train: str = "train", split_test: str = "eval",
              shots: Sequence[int] = (1, 5), draws: int = 20, batch_size: int = 8, seed: int = 0,
              linear_steps: int = 300) -> dict:
    """Tokenize both splits of a labelled (demo) dataset and probe; ``dataset``: a config or its dataset section."""
    data = dataset_section(dataset)
    if (data.num_frames, data.resolution) != (model.cfg.num_frames, model.cfg.image_size):
        raise ValueError(f"dataset clips are {data.num_frames} frames at {data.resolution}px, the tokenizer takes "
                         f"{model.cfg.num_frames} at {model.cfg.image_size}px")
    splits = {}
    for split in (split_train, split_test):
        clips = labelled_clips(data, split)
        features = extract_features(model, data, [path for path, _ in clips], batch_size)
        labels = {name: [meta[key] for _, meta in clips] for name, key in ATTRIBUTES.items()}
        splits[split] = (features, labels)
    result = probe_features(splits[split_train][0], splits[split_train][1], splits[split_test][0],
                            splits[split_test][1], shots, draws, seed, linear_steps)
    distinct = {role: {s: distinct_rows(splits[split][0][f"flat/{s}"]) for s in TOKEN_SETS}
                for role, split in (("train", split_train), ("test", split_test))}
    result.update(table=group_table(result), splits={"train": split_train, "test": split_test}, distinct=distinct,
                  num_clips={"train": len(splits[split_train][1]["shape"]),
                             "test": len(splits[split_test][1]["shape"])},
                  settings={"shots": list(shots), "draws": draws, "seed": seed, "linear_steps": linear_steps},
                  features={"mean": "mean of the branch's quantised latents",
                            "bag": "normalised histograms of the branch's first- and second-POS indices",
                            "flat": "the branch's quantised latents concatenated in latent order"})
    return result


def format_probe_markdown(result: dict, kinds: Sequence[str] = FEATURE_KINDS) -> str:
    """Markdown: the 2x2 (appearance/motion x spatial/temporal) table per feature kind, then per-attribute detail."""
    table, lines = result.get("table") or group_table(result), []
    readouts = list(next(iter(table.values())).keys())
    lines += ["| features | read-out | appearance ← spatial | appearance ← temporal | motion ← spatial | "
              "motion ← temporal | chance (app. / mot.) |", "|---|---|---|---|---|---|---|"]
    for kind in [k for k in kinds if k in table]:
        for readout in readouts:
            cell = table[kind][readout]
            app, mot = cell["appearance"], cell["motion"]
            lines.append(f"| {kind} | {readout} | {app['spatial']:.3f} | {app['temporal']:.3f} | "
                         f"{mot['spatial']:.3f} | {mot['temporal']:.3f} | {app['chance']:.3f} / {mot['chance']:.3f} |")
    lines += ["", "| features | tokens | read-out | " + " | ".join(ATTRIBUTES) + " |",
              "|---|---|---|" + "---|" * len(ATTRIBUTES)]
    for kind in [k for k in kinds if k in result["results"]]:
        for token_set, scores in result["results"][kind].items():
            for readout in readouts:
                cells = " | ".join(f"{scores[a][readout]:.3f}" for a in ATTRIBUTES if a in scores)
                lines.append(f"| {kind} | {token_set} | {readout} | {cells} |")
    chance = " | ".join(f"{result['chance'][a]['uniform']:.3f} ({result['chance'][a]['majority']:.3f})"
                        for a in ATTRIBUTES if a in result["chance"])
    lines.append(f"| chance | uniform (majority) | | {chance} |")
    if "distinct" in result:  # tokens that never change between clips cannot tell clips apart
        lines.append("\nDifferent token sequences among the clips: " + "; ".join(
            f"{role} {s} {counts[s]}/{result['num_clips'][role]}"
            for role, counts in result["distinct"].items() for s in TOKEN_SETS))
    return "\n".join(lines)
