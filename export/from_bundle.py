"""A PyTorch captioner rebuilt from a shipped bundle's ONNX weights, so benchmarks that compare against PyTorch
(``bench/inference_throughput.py``'s tutorial-style baseline) run from a fresh clone, without the training
checkpoint that only ``make model`` makes.

The bundle holds every weight PyTorch needs: the encoder's convolutions with batch norm already fused into them
(``captionbot.export.compact.fuse_encoder_batchnorm``), stored as fp16 values (``__fp16`` initializers cast back
to fp32), and the decoder's layers, some of them as transposed ``MatMul`` constants that the exporter renamed
(``onnx::MatMul_N``); those are matched to the one parameter of the transposed shape. The rebuilt model computes
what the bundle's fp32 graphs compute (``tests/export/test_from_bundle.py`` checks features and log-probabilities).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from captionbot.export.compact import fuse_encoder_batchnorm
from captionbot.inference.bundle import read_manifest, read_vocab
from captionbot.training.model import Captioner, DecoderConfig
from onnx import numpy_helper

from captionbot import formats

FP16_SUFFIX = "__fp16"


def _initializers(path: Path) -> dict[str, np.ndarray]:
    """Name -> fp32 array for every initializer of an ONNX file (fp16-stored weights under their fp32 name)."""
    out = {}
    for init in onnx.load(str(path)).graph.initializer:
        name = init.name.removesuffix(FP16_SUFFIX)
        arr = numpy_helper.to_array(init)
        out[name] = arr.astype(np.float32) if arr.dtype == np.float16 else arr
    return out


def _assign(params: dict[str, torch.Tensor], inits: dict[str, np.ndarray], prefix: str) -> set[str]:
    """Copy every initializer named after a parameter (``prefix`` + its name); then match the renamed ``MatMul``
    constants to the remaining parameters by transposed shape. Returns the parameters set."""
    done: set[str] = set()
    anonymous = {k: v for k, v in inits.items() if k.startswith("onnx::")}
    for key, tensor in params.items():
        arr = inits.get(key.removeprefix(prefix)) if key.startswith(prefix) else None
        if arr is not None and tuple(arr.shape) == tuple(tensor.shape):
            tensor.copy_(torch.tensor(arr))
            done.add(key)
    for key, tensor in params.items():
        if key in done or not key.startswith(prefix) or tensor.dim() != 2:
            continue
        fits = [k for k, v in anonymous.items() if tuple(v.shape) == tuple(tensor.shape[::-1])]
        if len(fits) == 1:
            tensor.copy_(torch.tensor(anonymous.pop(fits[0]).T))
            done.add(key)
    return done


@torch.no_grad()
def captioner_from_bundle(bundle_dir: Path) -> tuple[Captioner, list[str]]:
    """(PyTorch captioner in eval mode with batch norm fused, vocabulary) from a bundle's fp32 graphs.

    Raises ``ValueError`` when a parameter the captioner needs is not found in the graphs."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    itos = read_vocab(bundle_dir, manifest)
    dec = manifest.decoder
    cfg = DecoderConfig(vocab_size=dec.vocab_size, feature_dim=manifest.encoder.channels, embed_dim=dec.embed_dim,
                        hidden_dim=dec.hidden_dim, attention_dim=dec.attention_dim, max_len=dec.max_len)
    model = Captioner(cfg, arch=manifest.encoder.arch, pretrained=False).eval()
    fuse_encoder_batchnorm(model)
    params = {k: v for k, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()}
    encoder = {k: v for k, v in params.items() if k.startswith("encoder.")}
    decoder = {k: v for k, v in params.items() if k.startswith("decoder.")}
    done = _assign(encoder, _initializers(bundle_dir / formats.ENCODER_FILE), "encoder.")
    init_names = ("decoder.init_h.", "decoder.init_c.", "decoder.attention.feature_proj.")
    done |= _assign({k: v for k, v in decoder.items() if k.startswith(init_names)},
                    _initializers(bundle_dir / formats.DECODER_INIT_FILE), "")
    done |= _assign({k: v for k, v in decoder.items() if k not in done},
                    _initializers(bundle_dir / formats.DECODER_STEP_FILE), "")
    # a parameter that shares its tensor with one set above (tied embeddings) is set too
    set_ptrs = {params[k].data_ptr() for k in done}
    unused = ("encoder.net._fc.", "encoder.net._bn", "running_mean", "running_var")  # classifier, fused-away BN
    missing = [k for k, v in params.items() if k not in done and v.data_ptr() not in set_ptrs
               and not any(u in k for u in unused)]
    if missing:
        raise ValueError(f"{bundle_dir}: no weight in the graphs for {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}")
    return model, itos
