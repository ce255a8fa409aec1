"""The size of a model as stored, measured on its ONNX bytes (one code path for every strategy).

Parameters
    :func:`count_params` counts the elements of the weight and bias tensors the
    exported graph stores (its initializers), float or integer alike. Left out:
    quantization scales and zero points (initializers used only as the scale or
    zero-point input of a quantize/dequantize/QLinear operator) and integer
    index/shape constants (``int64``, ``uint64``, ``bool``, ``string``
    initializers; ONNX requires ``int64`` for shapes and axes). Quantized biases
    (``int32``) count. The exporter folds BatchNorm into the preceding
    convolution where it can; a BatchNorm it could not fold keeps its four
    vectors, which count because the device must store them. The same rule is
    applied to the dense and to every compressed model of a cell, so a
    compression ratio (dense non-zero / compressed non-zero) compares like with
    like. A parameter is non-zero when its real value is: for quantized tensors
    the stored value differs from the zero point.

Formats
    Every format in :data:`FORMATS` can be loaded back to the same ONNX bytes
    with :func:`load_format` and run in onnxruntime:

    - ``onnx``: the ONNX file as serialized (int8 weights for quantized models);
    - ``sparse``: :func:`encode_sparse`, pruned weights stored without their zeros;
    - ``*_zlib`` / ``*_zstd``: either of those, compressed losslessly.

    ``storage_bytes`` in :func:`size_report` is the smallest of them (in
    ``storage_format``): what an over-the-air update sends or a disk stores. A
    device must decode it before running it, so it is never a flash figure;
    the bytes a runtime executes in place are :mod:`ecgbench.measure.flash`'s.
    The sparse format stores zero bit patterns for free; :func:`canonical_zeros`
    turns the ``-0.0`` weights that pruning leaves into ``+0.0`` first.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto

from ecgbench.errors import EcgbenchError
from ecgbench.measure.onnx_model import OnnxModel, WeightQuant

# --- parameter counting ---------------------------------------------------------

# Float element types -> the unsigned word holding their bits (for -0.0 detection).
_FLOAT_TYPES = {
    TensorProto.FLOAT: np.dtype("<u4"),
    TensorProto.DOUBLE: np.dtype("<u8"),
    TensorProto.FLOAT16: np.dtype("<u2"),
    TensorProto.BFLOAT16: np.dtype("<u2"),
}

_NOT_PARAMETERS = frozenset({TensorProto.INT64, TensorProto.UINT64, TensorProto.BOOL, TensorProto.STRING, TensorProto.UNDEFINED})


def parameter_arrays(onnx_model: bytes | str | Path | onnx.ModelProto | OnnxModel) -> dict[str, np.ndarray]:
    """The initializers counted as parameters (see the module docstring for the rule), by name."""
    model = onnx_model if isinstance(onnx_model, OnnxModel) else OnnxModel(onnx_model)
    excluded = model.quantization_parameters()
    return {
        name: model.array(name)
        for name, init in model.initializers.items()
        if init.data_type not in _NOT_PARAMETERS and name not in excluded
    }


def count_params(onnx_model: bytes | str | Path | onnx.ModelProto) -> tuple[int, int]:
    """``(total, nonzero)`` elements of the model's weight and bias tensors."""
    model = OnnxModel(onnx_model)
    params = parameter_arrays(model)
    total = sum(int(a.size) for a in params.values())
    nonzero = sum(model.nonzero(model.weight_quant.get(name, WeightQuant(name))) for name in params)
    return total, nonzero


# --- sparse encoding ------------------------------------------------------------

SPARSE_MAGIC = b"ECGSPRS1"

# Per-tensor layouts. With n elements of b bytes, k of them non-zero (sparsity s = 1 - k/n):
#   dense   n*b                      (the tensor stays inside the ONNX graph as it was)
#   bitmap  ceil(n/8) + k*b          one bit per element (np.packbits, little bit order), then the non-zeros
#   csr     (rows+1)*p + k*(i + b)   row pointers of p bytes, column indices of i bytes (uint8/16/32,
#                                    the narrowest that fits), then the non-zeros; rows = dims[0]
# The smallest is chosen per tensor (dense on ties) and recorded in the table.
# Break-even of bitmap against dense: n/8 + (1-s)*n*b < n*b  <=>  s > 1/(8b):
#   fp32 (b=4): s > 1/32 = 3.125 %;  int8 (b=1): s > 1/8 = 12.5 %.
# csr with uint8 column indices beats bitmap when k*(1+b) + (rows+1)*p < n/8 + k*b,
# i.e. roughly when density k/n < 1/8 (sparsity above 87.5 %).
BITMAP_BREAK_EVEN_SPARSITY_FP32 = 1 / 32
BITMAP_BREAK_EVEN_SPARSITY_INT8 = 1 / 8

_LAYOUT_BITMAP = 1
_LAYOUT_CSR = 2
# Table entry: initializer index, layout, itemsize, row-pointer bytes, column-index bytes,
# rows, non-zeros, payload bytes.
_ENTRY = struct.Struct("<IBBBBIII")
_HEADER = struct.Struct("<8sII")  # magic, skeleton bytes, entries


def _narrowest_uint(max_value: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise EcgbenchError(f"a tensor of {max_value} elements per row is too large for the sparse format")


@dataclass(frozen=True)
class _Plan:
    layout: int
    payload: bytes
    rows: int
    ptr_bytes: int
    idx_bytes: int
    nonzero: int


def _encode_tensor(raw: bytes, itemsize: int, dims: list[int]) -> _Plan | None:
    """The smallest sparse layout of one tensor, or None when dense is as small."""
    n = len(raw) // itemsize
    if n == 0 or n * itemsize != len(raw):
        return None
    words = np.frombuffer(raw, dtype=np.dtype(f"<u{itemsize}"))
    mask = words != 0  # bit pattern, so -0.0 and NaN payloads round-trip
    k = int(mask.sum())
    values = words[mask].tobytes()
    rows = int(dims[0]) if dims else 1
    cols = n // rows
    ptr_dtype, idx_dtype = _narrowest_uint(k), _narrowest_uint(max(cols - 1, 0))
    sizes = {
        _LAYOUT_BITMAP: (n + 7) // 8 + k * itemsize,
        _LAYOUT_CSR: (rows + 1) * ptr_dtype.itemsize + k * (idx_dtype.itemsize + itemsize),
    }
    layout = min(sizes, key=sizes.get)
    if sizes[layout] >= len(raw):
        return None
    if layout == _LAYOUT_BITMAP:
        payload = np.packbits(mask, bitorder="little").tobytes() + values
        return _Plan(layout, payload, rows, 0, 0, k)
    grid = mask.reshape(rows, cols)
    row_ptr = np.zeros(rows + 1, dtype=np.int64)
    row_ptr[1:] = np.cumsum(grid.sum(axis=1))
    col_idx = np.nonzero(grid)[1]
    payload = row_ptr.astype(ptr_dtype).tobytes() + col_idx.astype(idx_dtype).tobytes() + values
    return _Plan(layout, payload, rows, ptr_dtype.itemsize, idx_dtype.itemsize, k)


def _decode_tensor(payload: bytes, layout: int, itemsize: int, n: int, rows: int, ptr_bytes: int, idx_bytes: int, k: int) -> bytes:
    word = np.dtype(f"<u{itemsize}")
    words = np.zeros(n, dtype=word)
    if layout == _LAYOUT_BITMAP:
        nbytes = (n + 7) // 8
        mask = np.unpackbits(np.frombuffer(payload[:nbytes], dtype=np.uint8), count=n, bitorder="little").astype(bool)
        words[mask] = np.frombuffer(payload[nbytes:], dtype=word, count=k)
    elif layout == _LAYOUT_CSR:
        cols = n // rows
        ptr_end = (rows + 1) * ptr_bytes
        row_ptr = np.frombuffer(payload[:ptr_end], dtype=np.dtype(f"<u{ptr_bytes}")).astype(np.int64)
        idx_end = ptr_end + k * idx_bytes
        col_idx = np.frombuffer(payload[ptr_end:idx_end], dtype=np.dtype(f"<u{idx_bytes}")).astype(np.int64)
        row_idx = np.repeat(np.arange(rows), np.diff(row_ptr))
        words[row_idx * cols + col_idx] = np.frombuffer(payload[idx_end:], dtype=word, count=k)
    else:
        raise EcgbenchError(f"sparse model: unknown tensor layout {layout}; was it written by a newer ecgbench?")
    return words.tobytes()


def encode_sparse(onnx_bytes: bytes) -> bytes:
    """Store each initializer whose zeros make it smaller as a bitmap or CSR of its non-zeros; the rest of the graph as is."""
    model = onnx.load_from_string(onnx_bytes)
    entries, payloads = [], []
    for index, init in enumerate(model.graph.initializer):
        # Only tensors held in raw_data are encoded; typed-field tensors (scalars from
        # quantizers) and external data stay in the graph untouched.
        if not init.raw_data or init.data_location == TensorProto.EXTERNAL:
            continue
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        if itemsize not in (1, 2, 4, 8) or init.data_type in (TensorProto.INT4, TensorProto.UINT4):
            continue
        plan = _encode_tensor(init.raw_data, itemsize, list(init.dims))
        if plan is None:
            continue
        entries.append(_ENTRY.pack(index, plan.layout, itemsize, plan.ptr_bytes, plan.idx_bytes, plan.rows, plan.nonzero, len(plan.payload)))
        payloads.append(plan.payload)
        init.ClearField("raw_data")
    skeleton = model.SerializeToString()
    return _HEADER.pack(SPARSE_MAGIC, len(skeleton), len(entries)) + b"".join(entries) + skeleton + b"".join(payloads)


def decode_sparse(data: bytes) -> bytes:
    """The ONNX bytes :func:`encode_sparse` was given, bit for bit."""
    if data[: len(SPARSE_MAGIC)] != SPARSE_MAGIC:
        raise EcgbenchError("not an ecgbench sparse model (magic bytes missing); decode it with the loader of its own format")
    _, skeleton_bytes, n_entries = _HEADER.unpack_from(data, 0)
    pos = _HEADER.size
    entries = [_ENTRY.unpack_from(data, pos + i * _ENTRY.size) for i in range(n_entries)]
    pos += n_entries * _ENTRY.size
    model = onnx.load_from_string(data[pos : pos + skeleton_bytes])
    pos += skeleton_bytes
    for index, layout, itemsize, ptr_bytes, idx_bytes, rows, k, length in entries:
        init = model.graph.initializer[index]
        n = int(np.prod(init.dims, dtype=np.int64)) if len(init.dims) else 1
        init.raw_data = _decode_tensor(data[pos : pos + length], layout, itemsize, n, rows, ptr_bytes, idx_bytes, k)
        pos += length
    return model.SerializeToString()


# --- formats --------------------------------------------------------------------


ZSTD_LEVEL = 19  # the highest standard level (zstd(1)); ~1 % smaller than level 9 on pruned models
ZLIB_LEVEL = 9


def _zstd_compress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)


def _zlib_compress(data: bytes) -> bytes:
    return zlib.compress(data, ZLIB_LEVEL)


def _identity(data: bytes) -> bytes:
    return data


# name -> (writer from ONNX bytes, loader back to ONNX bytes)
FORMATS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "onnx": (_identity, _identity),
    "onnx_zlib": (_zlib_compress, zlib.decompress),
    "onnx_zstd": (_zstd_compress, _zstd_decompress),
    "sparse": (encode_sparse, decode_sparse),
    "sparse_zlib": (lambda b: _zlib_compress(encode_sparse(b)), lambda b: decode_sparse(zlib.decompress(b))),
    "sparse_zstd": (lambda b: _zstd_compress(encode_sparse(b)), lambda b: decode_sparse(_zstd_decompress(b))),
}


# File name endings of each format, for files written in it.
FORMAT_SUFFIXES: dict[str, str] = {
    "onnx": ".onnx",
    "onnx_zlib": ".onnx.zlib",
    "onnx_zstd": ".onnx.zst",
    "sparse": ".onnx.sparse",
    "sparse_zlib": ".onnx.sparse.zlib",
    "sparse_zstd": ".onnx.sparse.zst",
}


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise EcgbenchError(f"unknown model format '{fmt}'; known formats: {', '.join(FORMATS)}")


def save_format(onnx_bytes: bytes, fmt: str) -> bytes:
    """``onnx_bytes`` written in format ``fmt`` (one of :data:`FORMATS`)."""
    _check_format(fmt)
    return FORMATS[fmt][0](onnx_bytes)


def load_format(data: bytes, fmt: str) -> bytes:
    """The ONNX bytes stored in ``data`` of format ``fmt``."""
    _check_format(fmt)
    return FORMATS[fmt][1](data)


def detect_format(data: bytes) -> str:
    """The format of a stored model, from its first bytes."""
    if data[: len(SPARSE_MAGIC)] == SPARSE_MAGIC:
        return "sparse"
    if data[:4] == b"\x28\xb5\x2f\xfd":  # zstd frame magic (RFC 8878)
        inner = _zstd_decompress(data)
        return "sparse_zstd" if inner[: len(SPARSE_MAGIC)] == SPARSE_MAGIC else "onnx_zstd"
    if len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0:  # zlib header (RFC 1950)
        try:
            inner = zlib.decompress(data)
        except zlib.error:
            return "onnx"
        return "sparse_zlib" if inner[: len(SPARSE_MAGIC)] == SPARSE_MAGIC else "onnx_zlib"
    return "onnx"


def load_any(data: bytes) -> bytes:
    """ONNX bytes from a model stored in any of :data:`FORMATS` (detected from its first bytes)."""
    return load_format(data, detect_format(data))


def canonical_zeros(onnx_bytes: bytes) -> bytes:
    """``onnx_bytes`` with every ``-0.0`` weight stored as ``+0.0`` (the model's outputs do not change).

    Pruning by ``weight * mask`` and BatchNorm folding with a negative scale
    leave ``-0.0`` weights, whose bit pattern is not zero; a product with
    either zero adds nothing to a sum, so outputs are the same, and the sparse
    format then stores every zero for free.
    """
    model = onnx.load_from_string(onnx_bytes)
    changed = False
    for init in model.graph.initializer:
        if init.data_type not in _FLOAT_TYPES or not init.raw_data:
            continue
        words = np.frombuffer(init.raw_data, dtype=_FLOAT_TYPES[init.data_type])
        negative_zero = words == _FLOAT_TYPES[init.data_type].type(1 << (8 * words.itemsize - 1))
        if negative_zero.any():
            init.raw_data = np.where(negative_zero, 0, words).astype(words.dtype).tobytes()
            changed = True
    return model.SerializeToString() if changed else onnx_bytes


def size_report(onnx_bytes: bytes) -> dict:
    """Bytes of the model in every loadable format, the smallest (``storage_bytes``, ``storage_format``) and the parameter counts.

    Sizes are those of :func:`canonical_zeros` of the model (the same outputs); callers
    that store the model should store that one.
    """
    onnx_bytes = canonical_zeros(onnx_bytes)
    sparse = encode_sparse(onnx_bytes)
    sizes = {}
    for base, data in (("onnx", onnx_bytes), ("sparse", sparse)):  # each compressed once (zstd -19: ~4 MB/s)
        sizes[base] = len(data)
        sizes[f"{base}_zlib"] = len(_zlib_compress(data))
        sizes[f"{base}_zstd"] = len(_zstd_compress(data))
    sizes = {fmt: sizes[fmt] for fmt in FORMATS}
    best = min(sizes, key=sizes.get)  # first listed wins ties: the plain ONNX file
    total, nonzero = count_params(onnx_bytes)
    return {
        **sizes,
        "storage_bytes": sizes[best],
        "storage_format": best,
        "total_params": total,
        "nonzero_params": nonzero,
    }
