"""A local-grid captioner started from a shipped 7×7 bundle's weights (issue 19).

Every local-grid model trained from scratch so far lost about 2 CIDEr points against the shipped model. This
starts one from the shipped model itself instead. Two facts make that possible:

- the grid's global vector (the 7×7 head features, pooled; ``Encoder._join_local_and_global``) is exactly the mean
  of the shipped encoder's features when the encoder's top is the shipped fine-tuned one, and
- the shipped decoder's attention is nearly uniform (normalised entropy 0.98, docs/model.md), so its context vector
  is close to that mean.

So the new decoder takes every shipped weight that reads the image through the global channels (initial state,
gate, LSTM input, deep output) and zeros where the 112 local channels enter them: at the start it computes what the
shipped decoder would with its attended context replaced by the mean. The attention is new (its size may differ;
the shipped one had nothing to point at). Training then teaches it to use the local cells: ``captionbot train
--init-from`` the checkpoint written here, with ``--fine-tune-blocks 1`` (its encoder top is the shipped one).

The encoder comes from the bundle too, whose batch norms are fused into the convolutions: each BatchNorm is set to
pass its input through and add the fused bias (eval mode, as training keeps the encoder), so the rebuilt network
computes the bundle's encoder with the unfused module layout checkpoints have.

``python -m captionbot.training.grid_warm_start models/default --out RUN/warm.pt [--attention 128]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from captionbot.export.from_bundle import captioner_from_bundle
from captionbot.training.checkpoint import save_checkpoint
from captionbot.training.data import Vocab
from captionbot.training.model import ENCODERS, LOCAL_CHANNELS, SHARED_CHANNELS, Captioner, Decoder, DecoderConfig
from torch import nn

CONV_BN_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


def _copy_fused_pair(fused_parent: nn.Module, parent: nn.Module, conv_name: str, bn_name: str) -> None:
    """``parent``'s conv + BatchNorm compute ``fused_parent``'s fused conv (weight and bias) in eval mode."""
    fused, conv = getattr(fused_parent, conv_name, None), getattr(parent, conv_name, None)
    if fused is None or conv is None:  # (a block without an expansion has no expand conv)
        return
    bn = getattr(parent, bn_name)
    conv.weight.copy_(fused.weight)
    bias = fused.bias if fused.bias is not None else torch.zeros(conv.out_channels)
    bn.weight.fill_(1.0)
    bn.bias.copy_(bias)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)


@torch.no_grad()
def copy_fused_encoder(fused_net: Any, net: Any) -> None:  # EfficientNets: an untyped library
    """Give the unfused EfficientNet-Lite ``net`` the weights of the batch-norm-fused ``fused_net`` (same arch)."""
    _copy_fused_pair(fused_net, net, "_conv_stem", "_bn0")
    for fused_block, block in zip(fused_net._blocks, net._blocks, strict=True):
        for conv_name, bn_name in CONV_BN_PAIRS:
            _copy_fused_pair(fused_block, block, conv_name, bn_name)
    _copy_fused_pair(fused_net, net, "_conv_head", "_bn1")


@torch.no_grad()
def _widen_inputs(new: nn.Linear | torch.Tensor, old: torch.Tensor, start: int, local: int) -> None:
    """Columns ``start:`` of ``new``'s weight (feature inputs) <- ``old``'s, with ``local`` zero columns first."""
    weight = new.weight if isinstance(new, nn.Linear) else new
    weight.zero_()
    weight[:, :start].copy_(old[:, :start])
    weight[:, start + local:].copy_(old[:, start:])


@torch.no_grad()
def copy_decoder(shipped: Decoder, grid: Decoder, local: int) -> None:
    """The shipped 7×7 decoder's weights into the grid decoder, whose features have ``local`` channels in front
    of the shipped ones (zeroed where they enter; the attention keeps its fresh initialisation)."""
    grid.embedding.weight.copy_(shipped.embedding.weight)  # tied to the output layer's weight
    grid.out.bias.copy_(shipped.out.bias)
    grid.out_h.load_state_dict(shipped.out_h.state_dict())
    _widen_inputs(grid.out_z, shipped.out_z.weight, 0, local)
    for new, old in ((grid.init_h, shipped.init_h), (grid.init_c, shipped.init_c)):
        _widen_inputs(new, old.weight, 0, local)
        new.bias.copy_(old.bias)
    embed = shipped.cfg.embed_dim
    _widen_inputs(grid.lstm.weight_ih, shipped.lstm.weight_ih, embed, local)
    grid.lstm.weight_hh.copy_(shipped.lstm.weight_hh)
    grid.lstm.bias_ih.copy_(shipped.lstm.bias_ih)
    grid.lstm.bias_hh.copy_(shipped.lstm.bias_hh)
    grid.gate.weight[local:].copy_(shipped.gate.weight)  # the local rows keep their fresh initialisation
    grid.gate.bias[local:].copy_(shipped.gate.bias)


def warm_started_grid(bundle_dir: Path, arch: str = "efficientnet_lite0_local",
                      attention_dim: int = 128) -> tuple[Captioner, Vocab]:
    """(a local-grid captioner holding ``bundle_dir``'s encoder and decoder weights, the bundle's vocabulary)."""
    if arch not in SHARED_CHANNELS:
        raise ValueError(f"{arch} has no global vector to carry the shipped decoder's inputs; "
                         f"choose from {sorted(SHARED_CHANNELS)}")
    shipped, itos = captioner_from_bundle(bundle_dir)
    if shipped.encoder.arch != arch.split("_local")[0]:
        raise ValueError(f"{bundle_dir} has a {shipped.encoder.arch} encoder; {arch} needs its base architecture")
    sc = shipped.decoder.cfg
    cfg = DecoderConfig(vocab_size=sc.vocab_size, feature_dim=ENCODERS[arch][3], embed_dim=sc.embed_dim,
                        hidden_dim=sc.hidden_dim, attention_dim=attention_dim, dropout=sc.dropout,
                        max_len=sc.max_len, shared_dim=SHARED_CHANNELS[arch])
    model = Captioner(cfg, arch=arch, pretrained=False).eval()
    copy_fused_encoder(shipped.encoder.net, model.encoder.net)
    copy_decoder(shipped.decoder, model.decoder, LOCAL_CHANNELS)
    return model, Vocab(list(itos))


def save_warm_start(model: Captioner, vocab: Vocab, out: Path, source: Path) -> None:
    """A checkpoint ``captionbot train --init-from`` accepts (its encoder marked fine-tuned: the bundle's top)."""
    save_checkpoint(out, model=model.state_dict(), decoder_config=model.decoder.cfg.to_dict(),
                    encoder_arch=model.encoder.arch, vocab=vocab.to_dict(), encoder_fine_tuned=True,
                    warm_started_from=str(source), epoch=0, step=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="a shipped 7×7 bundle (e.g. models/default)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--encoder", default="efficientnet_lite0_local", choices=sorted(SHARED_CHANNELS))
    parser.add_argument("--attention", type=int, default=128, help="attention size of the new decoder")
    args = parser.parse_args(argv)
    try:
        model, vocab = warm_started_grid(args.bundle, args.encoder, args.attention)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    save_warm_start(model, vocab, args.out, args.bundle)
    print(f"wrote {args.out}: {args.encoder}, attention {args.attention}, from {args.bundle}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
