"""Writes a damaged copy of an nfk projector file, for tests/cli/reliability.sh.

Usage: python3 craft_projector.py SRC DST MUTATION
MUTATION is one of:
  flip-data        flip one bit in the tensor data (checksums left as they were)
  flip-header      flip one bit in the JSON header (checksums left as they were)
  header:EXPR      apply a Python statement to the parsed header `h` (and tensor table `t`,
                   a dict by name), then re-checksum, so that only the reader's checks of the
                   values themselves can catch it; e.g. "t['basis']['offset'] = 2**64 - 1"
  data:NAME:VALUE  set every element of tensor NAME to VALUE (float), then re-checksum
"""
import json
import struct
import sys
import zlib

import numpy as np


def read(path):
    b = open(path, "rb").read()
    assert b[:8] == b"NFKPROJ\n"
    (n,) = struct.unpack("<Q", b[8:16])
    head = json.loads(b[20:20 + n])
    return head, bytearray(b[20 + n:])


def write(path, head, data):
    for t in head["tensors"]:
        off, nb = t["offset"], t["nbytes"]
        if isinstance(off, int) and isinstance(nb, int) and 0 <= off and 0 <= nb and off + nb <= len(data):
            t["crc32"] = zlib.crc32(bytes(data[off:off + nb]))
    h = json.dumps(head).encode()
    with open(path, "wb") as f:
        f.write(b"NFKPROJ\n" + struct.pack("<Q", len(h)) + struct.pack("<I", zlib.crc32(h)) + h + bytes(data))


def main():
    src, dst, mutation = sys.argv[1:4]
    raw = bytearray(open(src, "rb").read())
    if mutation == "flip-data":
        raw[-5] ^= 0x10
        open(dst, "wb").write(raw)
        return
    if mutation == "flip-header":
        (n,) = struct.unpack("<Q", raw[8:16])
        pos = 20 + raw[20:20 + n].index(b'"total_variance"') + 20
        raw[pos] ^= 0x01
        open(dst, "wb").write(raw)
        return
    head, data = read(src)
    tensors = {t["name"]: t for t in head["tensors"]}
    kind, _, arg = mutation.partition(":")
    if kind == "header":
        exec(arg, {"h": head, "t": tensors})
    elif kind == "data":
        name, value = arg.split(":")
        t = tensors[name]
        dtype = np.float32 if t["dtype"] == "float32" else np.float64
        arr = np.frombuffer(bytes(data[t["offset"]:t["offset"] + t["nbytes"]]), dtype=dtype).copy()
        arr[:] = float(value)
        data[t["offset"]:t["offset"] + t["nbytes"]] = arr.tobytes()
    else:
        raise SystemExit("unknown mutation " + mutation)
    write(dst, head, data)


if __name__ == "__main__":
    main()
