"""Class-conditional GPT and its sampler: alignment, KV cache, CFG, valid tokens, conditioning."""

import pytest
import torch
import torch.nn.functional as F

from sweettok.config import GeneratorConfig
from sweettok.models.generator import ClassConditionalGPT
from sweettok.models.sampling import filter_logits, sample, sample_sequence
from sweettok.token_layout import TokenLayout

LAYOUT = TokenLayout.from_sizes(5, 6, 4, 7, num_spatial=2, num_temporal=3, top_k=2)  # N = 15, L = 23


def tiny_model(seed: int = 0, **overrides) -> ClassConditionalGPT:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(**{"width": 32, "depth": 2, "heads": 4, "num_classes": 2, "class_dropout": 0.0, **overrides})
    return ClassConditionalGPT(cfg, LAYOUT).eval()


def random_flat(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cols = [torch.randint(LAYOUT.sizes[seg], (batch, n), generator=g) for seg, n in LAYOUT.lengths.items()]
    return torch.cat(cols, dim=1)


def test_block_size_equals_sequence_length():
    model = tiny_model()
    z = model.vocab.to_sequence(random_flat(2))
    assert model.block_size == z.shape[1] == model.vocab.sequence_length == 23
    assert model.position_embedding.shape[1] == model.block_size
    logits = model(z[:, :-1], torch.tensor([0, 1]))  # exactly the training input: [class, z[:-1]]
    assert logits.shape == (2, 23, model.vocab.vocab_size)
    with pytest.raises(ValueError, match="exceeds the block size 23"):
        model(z, torch.tensor([0, 1]))


def test_loss_is_code_positions_only_with_segment_softmax():
    model = tiny_model()
    flat, classes = random_flat(3, seed=1), torch.tensor([0, 1, 0])
    loss, logs = model.loss(flat, classes, label_smoothing=0.1)
    z = model.vocab.to_sequence(flat)
    logits = model(z[:, :-1], classes)  # logits[:, i] predicts z_i
    ranges = model.vocab.position_ranges
    terms = []
    for pos in range(z.shape[1]):
        lo, hi = ranges[pos].tolist()
        if hi - lo > 1:
            terms.append(F.cross_entropy(logits[:, pos, lo:hi], z[:, pos] - lo, label_smoothing=0.1, reduction="none"))
    assert len(terms) == LAYOUT.num_indices
    torch.testing.assert_close(loss, torch.cat(terms).mean())
    torch.testing.assert_close(model(flat, classes, return_loss=True, label_smoothing=0.1)[0], loss)
    assert 0.0 <= float(logs["accuracy"]) <= 1.0
    loss.backward()
    assert model.token_embedding.weight.grad.abs().sum() > 0


def test_class_dropout_rate_and_only_in_training():
    model = tiny_model(class_dropout=0.3)
    ids = torch.zeros(20_000, dtype=torch.long)
    dropped = model.drop_classes(ids, torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, model.null_class}
    assert abs((dropped == model.null_class).float().mean().item() - 0.3) < 0.02
    # p = 1: the training loss sees only the null class; eval mode never drops.
    always = tiny_model(class_dropout=1.0)
    flat, classes = random_flat(2, seed=2), torch.tensor([0, 1])
    null = torch.full_like(classes, always.null_class)
    torch.testing.assert_close(always.train().loss(flat, classes)[0], always.eval().loss(flat, null)[0])
    assert not torch.allclose(always.eval().loss(flat, classes)[0], always.eval().loss(flat, null)[0])


def test_forward_step_matches_full_forward():
    model = tiny_model(seed=3)
    z = model.vocab.to_sequence(random_flat(2, seed=3))
    classes = torch.tensor([1, 0])
    full = model(z[:, :-1], classes)
    cache = model.new_cache()
    inputs = torch.cat([model.vocab.class_token(classes)[:, None], z[:, :-1]], dim=1)
    for pos in range(model.block_size):
        torch.testing.assert_close(model.forward_step(inputs[:, pos], cache, pos), full[:, pos], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
def test_greedy_with_and_without_kv_cache_identical(cfg_scale):
    model = tiny_model(seed=4)
    classes = torch.tensor([0, 1, 2])  # 2 = null class
    with_cache = sample_sequence(model, classes, temperature=0, cfg_scale=cfg_scale, use_kv_cache=True)
    without = sample_sequence(model, classes, temperature=0, cfg_scale=cfg_scale, use_kv_cache=False)
    assert torch.equal(with_cache, without)


def test_cfg_scale_zero_equals_conditional_model():
    model = tiny_model(seed=5)
    classes = torch.tensor([0, 1])
    z = sample_sequence(model, classes, temperature=0, cfg_scale=0.0)
    # Greedy from the conditional model is a fixed point of its own teacher-forced argmax.
    logits = model(z[:, :-1], classes)
    for pos, (lo, hi) in enumerate(model.vocab.position_ranges.tolist()):
        assert torch.equal(logits[:, pos, lo:hi].argmax(-1) + lo, z[:, pos])
    # With class and null embeddings equal, (1+s)c - s*u = c: any scale gives the same samples.
    with torch.no_grad():
        first = model.vocab.class_token(torch.tensor([0]))
        model.token_embedding.weight[first:first + 3] = model.token_embedding.weight[first]
    z0 = sample_sequence(model, classes, temperature=0, cfg_scale=0.0)
    assert torch.equal(sample_sequence(model, classes, temperature=0, cfg_scale=3.0), z0)
    assert torch.equal(sample_sequence(model, classes, temperature=0, cfg_scale=3.0, cfg_schedule="linear"), z0)


def test_no_invalid_token_can_be_sampled():
    model = tiny_model(seed=6)
    with torch.no_grad():  # push all mass to ids that are never valid at code positions
        model.head.weight[model.vocab.num_codes:] *= 0
        model.head.weight[model.vocab.num_codes:] += model.final_norm.weight * 100
    vocab, g = model.vocab, torch.Generator().manual_seed(0)
    classes = torch.arange(3).repeat(40)
    z = sample_sequence(model, classes, temperature=2.0, cfg_scale=1.0, generator=g)
    ranges = vocab.position_ranges
    assert bool(((z >= ranges[:, 0]) & (z < ranges[:, 1])).all())
    for name, pos in vocab.separator_positions.items():
        assert bool((z[:, pos] == vocab.separator_ids[name]).all())
    assert sample(model, classes[:4], generator=g).shape == (4, LAYOUT.num_indices)


def test_seeded_and_filters():
    model = tiny_model(seed=7)
    classes = torch.tensor([0, 1, 0, 1])
    draw = lambda seed, **kw: sample_sequence(model, classes, temperature=1.0,
                                              generator=torch.Generator().manual_seed(seed), **kw)
    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))
    greedy = sample_sequence(model, classes, temperature=0)
    assert torch.equal(draw(3, top_k=1), greedy)
    assert torch.equal(draw(4, top_p=1e-6), greedy)
    kept = filter_logits(torch.tensor([[3.0, 2.0, 1.0, 0.0]]), top_k=3, top_p=0.8)
    assert torch.isfinite(kept).tolist() == [[True, True, False, False]]


def test_class_token_conditions_a_trained_model():
    model = tiny_model(seed=8).train()
    patterns = torch.stack([torch.zeros(LAYOUT.num_indices, dtype=torch.long), random_flat(1, seed=9)[0]])
    patterns[0] = 1
    classes = torch.tensor([0, 1]).repeat(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss, _ = model.loss(patterns[classes], classes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    samples = sample(model, torch.tensor([0, 1]), temperature=0)
    assert torch.equal(samples, patterns)


def test_bf16_autocast_forward_on_cpu():
    model = tiny_model(seed=10)
    flat, classes = random_flat(2, seed=10), torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(model.vocab.to_sequence(flat)[:, :-1], classes)
        loss, _ = model.loss(flat, classes, label_smoothing=0.1)
        z = sample_sequence(model, classes, temperature=0)
    assert logits.dtype == torch.bfloat16 and bool(torch.isfinite(logits).all())
    assert torch.isfinite(loss)
    model.vocab.from_sequence(z)  # valid sequence under autocast too


def test_paper_preset_parameter_count_on_meta():
    cfg = GeneratorConfig()
    with torch.device("meta"):
        model = ClassConditionalGPT(cfg, TokenLayout.paper())
    d, vocab, block = cfg.width, model.vocab.vocab_size, model.block_size
    assert (vocab, block) == (21730, 3848)
    # minGPT with biases, untied head: the original's 752,646,144 used vocab 21737 (7 unused ids).
    expected = cfg.depth * (12 * d * d + 13 * d) + 2 * vocab * d + block * d + 2 * d
    assert sum(p.numel() for p in model.parameters()) == expected == 752_646_144 - 7 * 2 * d


def two_pass_cfg(model, classes, cfg_scale, seed):
    """Reference CFG: conditional and unconditional rows in separate forwards with separate caches."""
    from sweettok.models.sampling import guidance_scale, pick_tokens

    gen = torch.Generator().manual_seed(seed)
    caches = model.new_cache(), model.new_cache()
    inputs = model.vocab.class_token(classes), model.vocab.class_token(torch.full_like(classes, model.null_class))
    z = torch.empty(len(classes), model.block_size, dtype=torch.long)
    with torch.no_grad():
        for pos, (lo, hi) in enumerate(model.vocab.position_ranges.tolist()):
            cond, uncond = (model.forward_step(inputs[i], caches[i], pos, code_range=(lo, hi)) for i in (0, 1))
            if hi - lo == 1:
                chosen = torch.full((len(classes),), lo)
            else:
                s = guidance_scale(cfg_scale, "constant", pos, model.block_size)
                chosen = pick_tokens((1 + s) * cond - s * uncond, 1.0, 0, 0.9, gen) + lo
            z[:, pos] = chosen
            inputs = chosen, chosen
    return z


def assert_batched_cfg_gives_the_two_pass_tokens(batch: int) -> None:
    """CFG sampling with cond/uncond rows in one forward draws the tokens of two separate passes."""
    model = tiny_model(seed=9)
    classes = torch.arange(batch) % 2
    for seed in range(3):
        batched = sample_sequence(model, classes, temperature=1.0, top_p=0.9, cfg_scale=1.5,
                                  generator=torch.Generator().manual_seed(seed))
        assert torch.equal(batched, two_pass_cfg(model, classes, 1.5, seed))


@pytest.mark.parametrize("batch", [1, 3])  # 2 rows: the CPU step kernel (W @ x.T); 6 rows: F.linear
def test_batched_cfg_gives_the_two_pass_tokens(batch):
    assert_batched_cfg_gives_the_two_pass_tokens(batch)


def test_step_linear_matches_linear():
    from sweettok.models.step_linear import step_linear

    g = torch.Generator().manual_seed(0)
    x, weight, bias = torch.randn(2, 48, generator=g), torch.randn(96, 48, generator=g), torch.randn(96, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(step_linear(x, weight, bias), F.linear(x, weight, bias))
        torch.testing.assert_close(step_linear(x, weight), F.linear(x, weight))
    assert step_linear(x.requires_grad_(), weight, bias).requires_grad  # training keeps F.linear's graph
