"""The teacher-forced training pass computes exactly what the word-by-word decoder (the exported graphs) does."""

import torch
from captionbot.training.model import Decoder, DecoderConfig, attention_entropy, doubly_stochastic_penalty


def _tiny_decoder() -> Decoder:
    torch.manual_seed(0)
    return Decoder(DecoderConfig(vocab_size=30, feature_dim=16, embed_dim=8, hidden_dim=8, attention_dim=8)).eval()


def test_packed_training_pass_equals_step_by_step_decoding() -> None:
    dec = _tiny_decoder()
    features = torch.randn(3, 5, 16)
    captions = torch.randint(4, 30, (3, 6))
    lengths = torch.tensor([6, 4, 3])  # sorted, as the batches are
    logits, alphas = dec(features, captions, lengths)
    h, c, att_proj = dec.init_state(features)
    for t in range(5):
        log_probs, h, c, alpha = dec.step(captions[:, t], h, c, features, att_proj)
        for i in range(3):
            if t < lengths[i] - 1:
                assert torch.allclose(logits[i, t].log_softmax(-1), log_probs[i], atol=1e-5)
                assert torch.allclose(alphas[i, t], alpha[i], atol=1e-6)
            else:  # past the caption's end nothing is computed
                assert (logits[i, t] == 0).all() and (alphas[i, t] == 0).all()


def test_attention_penalty_is_zero_only_when_every_region_gets_one_unit_of_attention() -> None:
    lengths = torch.tensor([5])  # 4 decoding steps over 4 regions
    spread = torch.eye(4).unsqueeze(0)  # step t looks only at region t: each region totals 1
    stare = torch.zeros(1, 4, 4)
    stare[..., 0] = 1.0  # every step looks at region 0
    assert doubly_stochastic_penalty(spread, lengths).item() == 0.0
    assert doubly_stochastic_penalty(stare, lengths).item() > 0.5


def test_attention_entropy_is_zero_for_one_region_one_for_uniform_and_ignores_steps_past_the_end() -> None:
    lengths = torch.tensor([3, 2])  # 2 real steps, then 1
    one = torch.zeros(2, 2, 8)
    one[..., 3] = 1.0
    uniform = torch.full((2, 2, 8), 1 / 8)
    assert attention_entropy(one, lengths).item() == 0.0
    assert abs(attention_entropy(uniform, lengths).item() - 1.0) < 1e-6
    mixed = one.clone()
    mixed[1, 1] = 1 / 8  # the second caption's padding step: not counted
    assert attention_entropy(mixed, lengths).item() == 0.0


def test_shared_channels_are_read_once_with_the_same_result() -> None:
    """DecoderConfig.shared_dim (efficientnet_lite0_local's global vector, the same in every cell): the decoder
    reads those channels from cell 0 only and computes what the plain decoder computes."""
    torch.manual_seed(0)
    plain = Decoder(DecoderConfig(vocab_size=30, feature_dim=16, embed_dim=8, hidden_dim=8, attention_dim=8)).eval()
    shared = Decoder(
        DecoderConfig(vocab_size=30, feature_dim=16, embed_dim=8, hidden_dim=8, attention_dim=8, shared_dim=10)
    ).eval()
    shared.load_state_dict(plain.state_dict())
    features = torch.cat([torch.randn(3, 9, 6), torch.randn(3, 1, 10).expand(3, 9, 10)], dim=2)
    captions = torch.randint(4, 30, (3, 6))
    lengths = torch.tensor([6, 4, 3])
    for a, b in zip(plain(features, captions, lengths), shared(features, captions, lengths), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    h, c, att_proj = shared.init_state(features)
    assert torch.allclose(att_proj, plain.init_state(features)[2], atol=1e-6)
    outs = shared.step(captions[:, 0], h, c, features, att_proj)
    for a, b in zip(outs, plain.step(captions[:, 0], h, c, features, att_proj), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_without_the_shared_context_a_step_reads_the_image_only_through_the_attended_cells() -> None:
    """DecoderConfig.shared_in_context False (issue 19): the global vector still shapes the initial state and the
    attention scores (both computed before the step), but a step given another global vector says the same."""
    cfg = dict(vocab_size=30, feature_dim=16, embed_dim=8, hidden_dim=8, attention_dim=8, shared_dim=10)
    torch.manual_seed(0)
    reads = Decoder(DecoderConfig(**cfg)).eval()
    cells_only = Decoder(DecoderConfig(**cfg, shared_in_context=False)).eval()
    cells_only.load_state_dict(reads.state_dict())
    local = torch.randn(2, 9, 6)
    features = torch.cat([local, torch.randn(2, 1, 10).expand(2, 9, 10)], dim=2)
    other_global = torch.cat([local, torch.randn(2, 1, 10).expand(2, 9, 10)], dim=2)
    h, c, att_proj = reads.init_state(features)
    words = torch.tensor([5, 7])
    for model, same in ((cells_only, True), (reads, False)):
        a = model.step(words, h, c, features, att_proj)[0]
        b = model.step(words, h, c, other_global, att_proj)[0]
        assert torch.allclose(a, b, atol=1e-6) == same


def test_an_attention_temperature_sharpens_the_map_the_context_is_computed_from() -> None:
    torch.manual_seed(0)
    plain = _tiny_decoder()
    sharp = Decoder(DecoderConfig(vocab_size=30, feature_dim=16, embed_dim=8, hidden_dim=8, attention_dim=8,
                                  attention_temperature=0.3)).eval()
    sharp.load_state_dict(plain.state_dict())
    features = torch.randn(2, 5, 16)
    h, c, att_proj = plain.init_state(features)
    words = torch.tensor([5, 7])
    _, _, _, a1 = plain.step(words, h, c, features, att_proj)
    logp, _, _, a3 = sharp.step(words, h, c, features, att_proj)
    # the same scores over T: log alpha differs from the plain map's by a factor 1/T, up to the normalisation
    la1, la3 = a1.log(), a3.log()
    assert torch.allclose(la3 - la3.mean(1, keepdim=True), (la1 - la1.mean(1, keepdim=True)) / 0.3, atol=1e-4)
    entropy = [float(-(a * a.log()).sum(1).mean().detach()) for a in (a1, a3)]
    assert entropy[1] < entropy[0]
    # and the decoder reads its context through the sharper map: the next word's distribution changes
    assert not torch.allclose(logp, plain.step(words, h, c, features, att_proj)[0])
