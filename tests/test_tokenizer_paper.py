"""Paper preset (TokenizerConfig defaults): parameter counts and shapes on the meta device; a slow real forward."""

from __future__ import annotations

import pytest
import torch
from tokenizer_helpers import tiny_prior

from sweettok.config import ProxyConfig, QuantizerConfig, TokenizerConfig
from sweettok.models.tokenizer import SweetTok
from sweettok.quantizers.mlc import MLCQuantizer
from sweettok.token_layout import TokenLayout

# the original's modules, counted on the reference manifest (official_sweettok.md §2.1)
REFERENCE_COUNTS = {"encoder": 87_855_776, "queries": 655_360, "projections": 1_050_624, "decoder": 94_696_448,
                    "pixel": 26_856_416 + 4_608}  # pixel_decoder + pixel_post_vq_conv


def paper_model(device: str, pixel_decoder: bool = False) -> SweetTok:
    """Paper preset; MLC quantizers over tiny priors (built on the CPU: they hold the word graph)."""
    quantizers = (MLCQuantizer(QuantizerConfig(), tiny_prior(6, 7, 64, ("adjective", "noun"))),
                  MLCQuantizer(QuantizerConfig(), tiny_prior(5, 8, 64, ("adverb", "verb"))))
    with torch.device(device):
        return SweetTok(TokenizerConfig(), ProxyConfig(), pixel_decoder=pixel_decoder, quantizers=quantizers)


def test_paper_parameter_counts():
    counts = paper_model("meta", pixel_decoder=True).parameter_counts()
    for part, reference in REFERENCE_COUNTS.items():
        assert abs(counts[part] - reference) <= 0.01 * reference, (part, counts[part], reference)
    assert all(counts[part] == reference for part, reference in REFERENCE_COUNTS.items())  # exact, in fact


def test_paper_shapes_on_meta():
    model = paper_model("meta")
    video = torch.empty(1, 3, 17, 256, 256, device="meta")
    spatial, temporal = model.encoder(video)
    assert spatial.shape == (1, 256, 512) and temporal.shape == (1, 1024, 512)  # 1,280 latents
    logits = model.decoder(spatial, temporal)
    assert logits.shape == (1, 8192, 5, 32, 32)
    layout = TokenLayout.paper()
    assert (layout.num_spatial, layout.num_temporal, layout.top_k) == (256, 1024, 2)
    assert layout.num_indices == 3840
    assert model.layout.num_indices == 3840  # same counts whatever the codebook sizes


@pytest.mark.slow
def test_paper_forward_cpu():
    model = paper_model("cpu").eval()
    video = torch.rand(1, 3, 17, 256, 256) - 0.5
    with torch.no_grad():
        out = model.encode(video)
        logits = model.decode_indices(out.indices)
    assert out.latents[0].shape == (1, 256, 512) and out.latents[1].shape == (1, 1024, 512)
    assert out.indices.shape == (1, 3840)
    assert logits.shape == (1, 8192, 5, 32, 32)
