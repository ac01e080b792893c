"""Minimal GGUF v3 writer and reader (numpy only), for exporting AeroLLM's own Llama models.

Format (ggml docs/gguf.md): magic "GGUF", u32 version 3, u64 tensor count, u64 kv count, the kv pairs,
the tensor infos (name, n_dims, ne[0..n_dims) with ne[0] = row length, ggml type, offset into the data
section), padding to `general.alignment` (32), then the tensor data, each tensor aligned to 32 bytes.
Quantization follows ggml's reference code (quantize_row_q8_0_ref): d = amax/127 stored as f16,
q = roundf(x / d) with the f32 d (round half away from zero).
"""
import struct

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# gguf metadata value types
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, \
    T_UINT64, T_INT64, T_FLOAT64 = range(13)

# ggml tensor types used here
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
QK8_0 = 32
TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q8_0: "Q8_0"}

# llama.cpp general.file_type values
FTYPE_ALL_F32, FTYPE_MOSTLY_F16, FTYPE_MOSTLY_Q8_0 = 0, 1, 7

_SCALAR_FMT = {T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I",
               T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q",
               T_FLOAT64: "<d"}


def quantize_q8_0(x):
    """Quantize a float32 array whose last dim is a multiple of 32 into Q8_0 block bytes."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert x.shape[-1] % QK8_0 == 0, x.shape
    blocks = x.reshape(-1, QK8_0)
    amax = np.abs(blocks).max(axis=1)
    d = amax / 127.0
    idv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1.0), 0.0).astype(np.float32)
    v = blocks * idv[:, None]
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)  # roundf: half away from zero
    out = np.empty((blocks.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def dequantize_q8_0(raw, n):
    """Dequantize n values from Q8_0 block bytes to float32."""
    b = np.frombuffer(raw, dtype=np.uint8, count=(n // QK8_0) * 34).reshape(-1, 34)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = b[:, 2:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(-1)


def tensor_nbytes(ttype, n):
    if ttype == GGML_F32:
        return 4 * n
    if ttype == GGML_F16:
        return 2 * n
    if ttype == GGML_Q8_0:
        return n // QK8_0 * 34
    raise ValueError("unsupported ggml type %d" % ttype)


def _pack_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


class GGUFWriter:
    """Collects metadata and tensors, then writes one GGUF v3 file."""

    def __init__(self):
        self.kv = []       # (key, type, value, elem_type)
        self.tensors = []  # (name, shape_torch_order, ggml_type, raw bytes)

    def add(self, key, vtype, value, elem_type=None):
        self.kv.append((key, vtype, value, elem_type))

    def add_string(self, key, v):
        self.add(key, T_STRING, v)

    def add_u32(self, key, v):
        self.add(key, T_UINT32, int(v))

    def add_f32(self, key, v):
        self.add(key, T_FLOAT32, float(v))

    def add_bool(self, key, v):
        self.add(key, T_BOOL, bool(v))

    def add_array(self, key, elem_type, values):
        self.add(key, T_ARRAY, list(values), elem_type)

    def add_tensor(self, name, arr, ggml_type):
        """arr: numpy float array in PyTorch order ([rows, cols]); stored with ne = reversed shape."""
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if ggml_type == GGML_F32:
            raw = arr.tobytes()
        elif ggml_type == GGML_F16:
            raw = arr.astype(np.float16).tobytes()
        elif ggml_type == GGML_Q8_0:
            raw = quantize_q8_0(arr)
        else:
            raise ValueError(ggml_type)
        self.tensors.append((name, tuple(arr.shape), ggml_type, raw))

    def _pack_value(self, vtype, v, elem_type=None):
        if vtype == T_STRING:
            return _pack_string(v)
        if vtype == T_ARRAY:
            out = [struct.pack("<IQ", elem_type, len(v))]
            if elem_type == T_STRING:
                out.extend(_pack_string(s) for s in v)
            else:
                out.append(np.asarray(v, dtype=np.dtype(_SCALAR_FMT[elem_type])).tobytes())
            return b"".join(out)
        return struct.pack(_SCALAR_FMT[vtype], v)

    def write(self, path):
        keys = [k for k, _, _, _ in self.kv]
        assert len(keys) == len(set(keys)), "duplicate metadata key"
        kv = list(self.kv)
        if "general.alignment" not in keys:
            kv.insert(1, ("general.alignment", T_UINT32, ALIGNMENT, None))
        head = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(kv))]
        for key, vtype, v, et in kv:
            head.append(_pack_string(key) + struct.pack("<I", vtype) + self._pack_value(vtype, v, et))
        offset = 0
        offsets = []
        for name, shape, ttype, raw in self.tensors:
            offsets.append(offset)
            ne = list(reversed(shape))
            head.append(_pack_string(name) + struct.pack("<I", len(ne)) +
                        struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", ttype, offset))
            offset += len(raw)
            offset += (-offset) % ALIGNMENT
        with open(path, "wb") as f:
            h = b"".join(head)
            f.write(h)
            f.write(b"\0" * ((-len(h)) % ALIGNMENT))
            pos = 0
            for (name, shape, ttype, raw), off in zip(self.tensors, offsets):
                assert pos == off
                f.write(raw)
                pos += len(raw)
                pad = (-pos) % ALIGNMENT
                f.write(b"\0" * pad)
                pos += pad


class GGUFReader:
    """Parses a GGUF v2/v3 file: .meta (key -> value), .tensors (name -> (ne, type, offset, nbytes))."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        assert self.buf[:4] == GGUF_MAGIC, "not a GGUF file"
        self.pos = 4
        self.version, n_tensors, n_kv = struct.unpack_from("<IQQ", self.buf, self.pos)
        self.pos += 20
        self.meta = {}
        self.meta_types = {}
        for _ in range(n_kv):
            key = self._str()
            (vtype,) = self._un("<I")
            self.meta[key] = self._value(vtype)
            self.meta_types[key] = vtype
        self.tensors = {}
        self.tensor_order = []
        for _ in range(n_tensors):
            name = self._str()
            (nd,) = self._un("<I")
            ne = list(self._un("<%dQ" % nd))
            ttype, off = self._un("<IQ")
            n = int(np.prod(ne))
            self.tensors[name] = (ne, ttype, off, tensor_nbytes(ttype, n))
            self.tensor_order.append(name)
        align = self.meta.get("general.alignment", ALIGNMENT)
        self.data_start = self.pos + ((-self.pos) % align)

    def _un(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self):
        (n,) = self._un("<Q")
        s = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def _value(self, vtype):
        if vtype == T_STRING:
            return self._str()
        if vtype == T_ARRAY:
            et, n = self._un("<IQ")
            if et == T_STRING:
                return [self._str() for _ in range(n)]
            fmt = _SCALAR_FMT[et]
            arr = np.frombuffer(self.buf, dtype=np.dtype(fmt), count=n, offset=self.pos)
            self.pos += n * struct.calcsize(fmt)
            return arr.tolist()
        return self._un(_SCALAR_FMT[vtype])[0]

    def tensor(self, name):
        """Returns the tensor as float32 numpy array in PyTorch order (reversed ne)."""
        ne, ttype, off, nb = self.tensors[name]
        n = int(np.prod(ne))
        raw = self.buf[self.data_start + off:self.data_start + off + nb]
        if ttype == GGML_F32:
            a = np.frombuffer(raw, dtype=np.float32, count=n).copy()
        elif ttype == GGML_F16:
            a = np.frombuffer(raw, dtype=np.float16, count=n).astype(np.float32)
        elif ttype == GGML_Q8_0:
            a = dequantize_q8_0(raw, n)
        else:
            raise ValueError("unsupported type %d" % ttype)
        return a.reshape(list(reversed(ne)))
