"""The official `safetensors` package as the reference for contaccum's safetensors I/O.

  write FILE.safetensors VALUES.json   writes a file with one tensor of every dtype (plus a
                                       0-d and an empty tensor) and the values it holds
  read  FILE.safetensors VALUES.json   reads a file (written by contaccum) and dumps what
                                       the official reader finds in it

VALUES.json: {"tensors": {name: {"dtype": safetensors name, "shape": [...], "values": [...]}},
              "metadata": {...}}; floats as doubles (exact for every float dtype here),
integers and bools as integers.
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint64: "U64", torch.uint32: "U32", torch.uint16: "U16", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def values_of(t):
    flat = t.reshape(-1)
    if t.dtype.is_floating_point:
        return flat.to(torch.float64).tolist()
    if t.dtype in (torch.uint64, torch.uint32, torch.uint16):
        return [int(v) for v in flat.to(torch.int64).tolist()]  # test values stay below 2**63
    return flat.to(torch.int64).tolist()


def dump(tensors, metadata, out):
    spec = {"tensors": {name: {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "values": values_of(t)}
                        for name, t in tensors.items()},
            "metadata": metadata or {}}
    with open(out, "w") as f:
        json.dump(spec, f)


def sample_tensors():
    g = torch.Generator().manual_seed(7)
    return {
        "f64": torch.tensor([[1 / 3, -2.5, 1e300], [-0.0, 5e-324, 7.0]], dtype=torch.float64),
        "f32": torch.randn(2, 3, generator=g),
        "f16": torch.randn(5, generator=g).to(torch.float16),
        "bf16": torch.randn(2, 2, generator=g).to(torch.bfloat16),
        "f8_e4m3": torch.tensor([0.5, -1.75, 448.0], dtype=torch.float32).to(torch.float8_e4m3fn),
        "f8_e5m2": torch.tensor([0.25, -3.0, 57344.0], dtype=torch.float32).to(torch.float8_e5m2),
        "i64": torch.tensor([-(2 ** 63), 2 ** 63 - 1, 0, 42], dtype=torch.int64),
        "i32": torch.tensor([[-(2 ** 31), 2 ** 31 - 1], [5, -6]], dtype=torch.int32),
        "i16": torch.tensor([-(2 ** 15), 2 ** 15 - 1, 3], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
        "u64": torch.tensor([0, 2 ** 62, 9], dtype=torch.int64).to(torch.uint64),
        "u32": torch.tensor([0, 2 ** 32 - 1, 9], dtype=torch.int64).to(torch.uint32),
        "u16": torch.tensor([0, 65535, 9], dtype=torch.int64).to(torch.uint16),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "bool": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.empty(0, 3, dtype=torch.float32),
        # A non-contiguous tensor: the writer must store it row-major.
        "transposed": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),
    }


def main():
    mode, file, out = sys.argv[1:4]
    if mode == "write":
        tensors = sample_tensors()
        metadata = {"format": "pt", "source": "python safetensors"}
        save_file({k: v.contiguous() for k, v in tensors.items()}, file, metadata=metadata)
        dump(tensors, metadata, out)
    elif mode == "read":
        with safe_open(file, framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}
            metadata = f.metadata()
        dump(tensors, metadata, out)
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
