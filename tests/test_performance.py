"""GPU-ready training options against the plain path on CPU: checkpointing, chunked CE, compile, bf16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tokenizer_helpers import demo_clip, demo_model, single_thread  # noqa: F401  (fixture)

from sweettok.config import ConfigError, LossesConfig, TrainingConfig, load_config
from sweettok.losses.stage1 import Stage1Loss, chunked_cross_entropy
from sweettok.models.transformer import Transformer, TransformerSpec
from sweettok.training.performance import apply_training_options, enable_activation_checkpointing


def stage1_step(model, video: torch.Tensor, codes: torch.Tensor, loss_fn: Stage1Loss) -> tuple[torch.Tensor, dict]:
    """Loss and gradients of one stage-1 step (dropout seeded so two runs draw alike)."""
    torch.manual_seed(123)
    model.zero_grad(set_to_none=True)
    logits, out = model(video)
    loss, _ = loss_fn(logits, codes, out.loss)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def step_inputs():
    video = demo_clip(batch=1)
    codes = torch.randint(0, 256, (1, 5, 8, 8), generator=torch.Generator().manual_seed(1))
    return video, codes


def test_activation_checkpointing_gives_the_same_step(step_inputs):
    model = demo_model().train()
    loss_fn = Stage1Loss(LossesConfig())
    plain_loss, plain_grads = stage1_step(model, *step_inputs, loss_fn)
    assert enable_activation_checkpointing(model) > 5  # every encoder and decoder stack
    ckpt_loss, ckpt_grads = stage1_step(model, *step_inputs, loss_fn)
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=0, atol=0)
    assert ckpt_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_cross_entropy_matches_one_piece(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(2, 512, 3, 4, 5, generator=g)).to(dtype).requires_grad_()
    target = torch.randint(0, 512, (2, 3, 4, 5), generator=g)
    plain = F.cross_entropy(logits.float(), target)
    (plain_grad,) = torch.autograd.grad(plain, logits)
    chunked = chunked_cross_entropy(logits, target, chunk_rows=7)  # 120 rows: 17 full chunks and a rest
    (chunked_grad,) = torch.autograd.grad(chunked, logits)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked_grad.float(), plain_grad.float(), rtol=1e-5, atol=1e-7)
    loss_fn = Stage1Loss(LossesConfig(cross_entropy_chunk_rows=16))
    torch.testing.assert_close(loss_fn(logits, target)[0], plain, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="cross_entropy_chunk_rows"):
        Stage1Loss(LossesConfig(cross_entropy_chunk_rows=-1))


def test_compile_option_gives_the_same_forward_and_keeps_state_dict_keys():
    torch.manual_seed(0)
    model = Transformer(TransformerSpec(dim=32, block="tw", heads=2, head_dim=16, rope=True, window_size=2, peg=False)).eval()
    video = torch.randn(2, 16, 32)  # (B·T, H·W, D) on a 4x4 grid
    check_compiled_forward(model, video)


@pytest.mark.slow
def test_compile_option_on_the_whole_demo_tokenizer(step_inputs):
    check_compiled_forward(demo_model().eval(), step_inputs[0])  # ~75 s of tracing on CPU


def check_compiled_forward(model, video: torch.Tensor) -> None:
    """apply_training_options(compile) keeps keys and forward results."""
    keys = list(model.state_dict())
    with torch.no_grad():
        plain = model(video)
        plain = plain[0] if isinstance(plain, tuple) else plain
    training = OmegaConf.structured(TrainingConfig(compile=True, compile_backend="aot_eager"))
    apply_training_options(model, training)  # aot_eager: dynamo + autograd tracing, no C++ toolchain
    assert model._compiled_call_impl is not None and list(model.state_dict()) == keys
    with torch.no_grad():
        out = model(video)
        torch.testing.assert_close(out[0] if isinstance(out, tuple) else out, plain, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="training.compile_mode must be one of"):  # at load, before any model
        load_config(None, ["training.compile=true", "training.compile_mode=fast"])


def test_bf16_autocast_step_is_close_to_fp32(step_inputs):
    model = demo_model().train()
    loss_fn = Stage1Loss(LossesConfig())
    fp32_loss, fp32_grads = stage1_step(model, *step_inputs, loss_fn)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_loss, bf16_grads = stage1_step(model, *step_inputs, loss_fn)
    assert abs(float(bf16_loss) - float(fp32_loss)) < 0.02 * float(fp32_loss)
    grad = torch.cat([g.flatten() for g in fp32_grads.values()])
    low = torch.cat([bf16_grads[n].flatten() for n in fp32_grads])
    assert F.cosine_similarity(grad, low, dim=0) > 0.98  # same descent direction
