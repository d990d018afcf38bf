"""Writes crates/nn/tests/fixtures/transformer.safetensors: PyTorch's nn.MultiheadAttention,
nn.TransformerEncoderLayer and nn.TransformerEncoder, for crates/nn/tests/transformer.rs.

Each case's parameters are initialised by PyTorch in float32 (seed 0) and stored under the
case's prefix with PyTorch's names (`mha.in_proj_weight`, `encoder.layers.0.norm1.bias`, ...),
with its float32 inputs and bool masks (biases and norm weights are first moved off their
initial zeros and ones). The outputs and gradients of `sum(output * c)` are computed from the
same values in float64, so they are references for a float32 computation rather than
PyTorch's own float32 rounding. Cases:

- mha: MultiheadAttention(8, 2), sequence-major, query [5, 3, 8], key and value [4, 3, 8], a
  bool key_padding_mask [3, 4] and a float attn_mask [5, 4]; outputs `out`, head-averaged
  `weights`, per-head `head_weights`; gradients for query, key, value, in_proj_weight.
- mha_kv: MultiheadAttention(8, 2, kdim=6, vdim=7, batch_first), a bool attn_mask
  [2 * 2, 5, 4] (its own pattern per batch entry and head) with need_weights=False, and
  the per-head weights; gradients for query, k_proj_weight.
- post: TransformerEncoderLayer(8, 2, 16, dropout=0), post-norm, ReLU, sequence-major, causal
  (a float -inf mask above the diagonal, passed with is_causal=True); input [5, 2, 8].
- encoder: TransformerEncoder of two TransformerEncoderLayer(8, 2, 16, dropout=0, gelu,
  batch_first, norm_first) and a final LayerNorm(8); input [3, 5, 8] with a bool
  src_key_padding_mask [3, 5]; gradients for the input and layers.0.linear1.weight.
- decoder_post: TransformerDecoderLayer(8, 2, 16, dropout=0), post-norm, sequence-major;
  target [4, 2, 8] with the causal mask, memory [5, 2, 8] with a bool
  memory_key_padding_mask [2, 5]; gradients for both inputs and two weights.
- transformer: Transformer(8, 2, 1 encoder and 2 decoder layers, 16, dropout=0, gelu,
  batch_first, norm_first); source [2, 5, 8] with a padding mask used for the memory too,
  target [2, 3, 8] causal; gradients for both inputs and one weight of each stack.

    python tools/transformer_reference.py   # needs torch
"""
import json
import pathlib
import struct

import torch
import torch.nn as nn

DTYPES = {torch.float32: ("F32", "f"), torch.float64: ("F64", "d"), torch.bool: ("BOOL", "?")}


def write_safetensors(path, tensors, source):
    """The safetensors format: a little-endian u64 header length, a JSON header, the data."""
    header, blobs, offset = {"__metadata__": {"source": source}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        code, fmt = DTYPES[t.dtype]
        values = t.flatten().tolist()
        data = struct.pack(f"<{len(values)}{fmt}", *values) if values else b""
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def pattern(shape, a, b):
    """Deterministic values in [-0.5, 0.5), as float32."""
    n = 1
    for s in shape:
        n *= s
    return torch.tensor([((i * a) % b) / b - 0.5 for i in range(n)]).reshape(shape)


def perturb(model):
    """Moves biases off PyTorch's zero initialisation and norm weights off one, so that
    the comparison sees them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.copy_(torch.rand_like(p) - 0.5)
            elif "norm" in name:
                p.copy_(0.8 + 0.4 * torch.rand_like(p))


def run(model, prefix, inputs, call, grads_of, out, move_off_init=True):
    """Stores model parameters and float32 inputs, then outputs and gradients in float64
    (after `perturb` unless `move_off_init` is false)."""
    if move_off_init:
        perturb(model)
    for name, p in model.state_dict().items():
        out[f"{prefix}.{name}"] = p
    for name, t in inputs.items():
        out[f"{prefix}.{name}"] = t
    model = model.double().train()
    leaves = {k: (v.double().requires_grad_() if v.dtype == torch.float32 else v) for k, v in inputs.items()}
    results = call(model, leaves)
    c = pattern(results["out"].shape, 11, 17).double()
    (results["out"] * c).sum().backward()
    for name, t in results.items():
        out[f"{prefix}.expected.{name}"] = t.detach()
    params = dict(model.named_parameters())
    for name in grads_of:
        source = leaves[name] if name in leaves else params[name]
        out[f"{prefix}.grad.{name}"] = source.grad


def main():
    torch.manual_seed(0)
    out = {}

    mha = nn.MultiheadAttention(8, 2)
    inputs = {
        "query": pattern([5, 3, 8], 7, 13),
        "key": pattern([4, 3, 8], 5, 11),
        "value": pattern([4, 3, 8], 3, 7),
        "key_padding_mask": torch.tensor([[False, False, True, False], [False] * 4, [True, False, False, True]]),
        "attn_mask": pattern([5, 4], 2, 9),
    }

    def mha_call(m, x):
        kw = dict(key_padding_mask=x["key_padding_mask"], attn_mask=x["attn_mask"].detach())
        y, w = m(x["query"], x["key"], x["value"], **kw)
        _, per_head = m(x["query"], x["key"], x["value"], average_attn_weights=False, **kw)
        return {"out": y, "weights": w, "head_weights": per_head}

    run(mha, "mha", inputs, mha_call, ["query", "key", "value", "in_proj_weight"], out)

    mha_kv = nn.MultiheadAttention(8, 2, kdim=6, vdim=7, batch_first=True)
    inputs = {
        "query": pattern([2, 5, 8], 7, 13),
        "key": pattern([2, 4, 6], 5, 11),
        "value": pattern([2, 4, 7], 3, 11),
        # A different pattern in each of the 2 * 2 (batch, head) slices, no row all masked.
        "attn_mask": pattern([4, 5, 4], 3, 7) > 0.2,
    }
    assert not inputs["attn_mask"].all(-1).any()
    assert not all(torch.equal(inputs["attn_mask"][0], inputs["attn_mask"][i]) for i in range(4))

    def mha_kv_call(m, x):
        q, k, v, mask = x["query"], x["key"], x["value"], x["attn_mask"]
        y, w = m(q, k, v, attn_mask=mask, need_weights=False)
        assert w is None
        _, per_head = m(q, k, v, attn_mask=mask, average_attn_weights=False)
        return {"out": y, "head_weights": per_head}

    run(mha_kv, "mha_kv", inputs, mha_kv_call, ["query", "k_proj_weight"], out)

    post = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    inputs = {"src": pattern([5, 2, 8], 7, 19)}

    def post_call(m, x):
        mask = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
        return {"out": m(x["src"], src_mask=mask, is_causal=True)}

    run(post, "post", inputs, post_call, ["src", "linear2.weight"], out)

    layer = lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    encoder = nn.TransformerEncoder(layer(), 2, norm=nn.LayerNorm(8), enable_nested_tensor=False)
    # PyTorch copies the layer: give the copies their own values, as tapegrad's are.
    for p in encoder.layers[1].parameters():
        with torch.no_grad():
            p.copy_(torch.rand_like(p) - 0.5)
    inputs = {
        "src": pattern([3, 5, 8], 5, 23),
        "src_key_padding_mask": torch.tensor([[False] * 5, [False] * 4 + [True], [False, True, False, False, True]]),
    }

    def encoder_call(m, x):
        return {"out": m(x["src"], src_key_padding_mask=x["src_key_padding_mask"])}

    run(encoder, "encoder", inputs, encoder_call, ["src", "layers.0.linear1.weight"], out)

    decoder_layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0)
    inputs = {
        "tgt": pattern([4, 2, 8], 7, 17),
        "memory": pattern([5, 2, 8], 5, 13),
        "memory_key_padding_mask": torch.tensor([[False] * 4 + [True], [False, True, False, False, False]]),
    }

    def decoder_layer_call(m, x):
        mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
        y = m(x["tgt"], x["memory"], tgt_mask=mask, tgt_is_causal=True,
              memory_key_padding_mask=x["memory_key_padding_mask"])
        return {"out": y}

    run(decoder_layer, "decoder_post", inputs, decoder_layer_call,
        ["tgt", "memory", "multihead_attn.in_proj_weight", "linear1.weight"], out)

    model = nn.Transformer(8, 2, 1, 2, 16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    inputs = {
        "src": pattern([2, 5, 8], 3, 19),
        "tgt": pattern([2, 3, 8], 7, 23),
        "src_key_padding_mask": torch.tensor([[False] * 5, [False] * 3 + [True] * 2]),
    }

    def transformer_call(m, x):
        mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=torch.float64)
        padding = x["src_key_padding_mask"]
        y = m(x["src"], x["tgt"], tgt_mask=mask, tgt_is_causal=True, src_key_padding_mask=padding,
              memory_key_padding_mask=padding)
        return {"out": y}

    run(model, "transformer", inputs, transformer_call,
        ["src", "tgt", "encoder.layers.0.linear2.weight", "decoder.layers.1.multihead_attn.out_proj.weight"], out)

    source = f"PyTorch {torch.__version__}, by tools/transformer_reference.py"
    path = pathlib.Path(__file__).parent.parent / "crates/nn/tests/fixtures/transformer.safetensors"
    write_safetensors(path, out, source)


if __name__ == "__main__":
    main()
