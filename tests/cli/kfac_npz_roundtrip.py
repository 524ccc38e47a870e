"""Reads an nfk K-FAC/EK-FAC .npz with numpy and checks it against reference .npy files.

Usage: kfac_npz_roundtrip.py FACTORS.npz REF_DIR
REF_DIR holds <member>.npy for every member (written by nfk's own write_npy) and expected.json
({"form", "n_examples", "num_params", "layers": [names], "left_out": [indices]}).
Exit 0 when everything matches exactly, 77 when numpy is missing, 1 otherwise.
"""
import json
import os
import sys
import zipfile

try:
    import numpy as np
except ImportError:
    sys.exit(77)


def main(npz_path, ref_dir):
    with zipfile.ZipFile(npz_path) as z:
        bad = z.testzip()  # every member's CRC-32
        assert bad is None, f"CRC mismatch in {bad}"
    expected = json.load(open(os.path.join(ref_dir, "expected.json")))
    data = np.load(npz_path)
    index = json.loads(data["index.json"])
    assert index["format"] == "nfk-kfac-factors", index["format"]
    for key in ("form", "n_examples", "num_params"):
        assert index[key] == expected[key], (key, index[key], expected[key])
    assert [l["name"] for l in index["layers"]] == expected["layers"]
    assert [l["index"] for l in index["left_out"]] == expected["left_out"]
    members = [m for l in index["layers"] for m in l["members"]]
    assert sorted(members) == sorted(k for k in data.files if k != "index.json"), data.files
    for m in members:
        ref = np.load(os.path.join(ref_dir, m + ".npy"))
        got = data[m]
        assert got.dtype == np.float64 and got.shape == ref.shape, (m, got.dtype, got.shape)
        assert np.array_equal(got, ref), m
    for l in index["layers"]:
        a = data[l["name"] + ".A"]
        assert a.shape == (l["in"], l["in"]) and np.allclose(a, a.T), l["name"]
    print("ok", len(members), "members")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
