# Writes the small real files the .npy / .npz / .safetensors reader tests compare against (and the
# fuzzers start from). Run from this folder: python3 make.py (NumPy only; the safetensors file is
# written by hand with struct + json, as the format defines it).
import json
import struct

import numpy as np

a = np.arange(6, dtype="<f4").reshape(2, 3) / 4  # 0, .25, ... 1.25
h = np.array([1.0, -2.0, 65504.0, 2.0**-24], dtype="<f2")
i = np.array([[-1, 0], [7, 2**40]], dtype="<i8")

np.save("v1.npy", a)  # format 1.0
with open("v2.npy", "wb") as f:
    np.lib.format.write_array(f, h, version=(2, 0))
with open("v3.npy", "wb") as f:
    np.lib.format.write_array(f, i, version=(3, 0))
np.savez("stored.npz", a=a, h=h, i=i)
np.savez_compressed("deflated.npz", a=a, h=h, i=i)

# BF16 as the upper half of fp32 (the values are exact in bf16).
b = np.array([1.5, -3.0, 0.0078125, 256.0], dtype="<f4").view("<u4") >> 16
tensors = {"a": ("F32", [2, 3], a.tobytes()), "h": ("F16", [4], h.tobytes()),
           "b": ("BF16", [2, 2], b.astype("<u2").tobytes())}
header, data = {"__metadata__": {"format": "pt"}}, b""
for name, (dtype, shape, raw) in tensors.items():
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)  # the reference writer pads the header to 8 bytes with spaces
with open("tensors.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)
