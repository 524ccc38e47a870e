"""Arrays given to the Python bindings (issue 11, defect 6): every input either converts to the
values it holds or raises one clear ValueError/TypeError.
"""
import numpy as np
import pytest
import torch

import nfk
from support import N, one_line


def test_big_endian_arrays_are_converted_not_misread(fitted, x, ref, d):
    assert np.array_equal(fitted.transform(x.astype(">f4")), ref)
    x64 = x.astype(np.float64)
    assert np.array_equal(fitted.transform(x64.astype(">f8")), fitted.transform(x64))
    xi = (x * 100).astype(np.int64)
    for dt in (">i8", ">i4", ">i2", ">u2"):
        assert np.array_equal(fitted.transform(xi.astype(dt)),
                              fitted.transform(xi.astype(np.float32))), dt
    # Through the fit too: the Fisher statistics of a big-endian copy are the native ones.
    i_native = nfk.fisher_diag(d / "cnn.pt", x64, kind="classifier")
    assert np.array_equal(nfk.fisher_diag(d / "cnn.pt", x64.astype(">f8"), kind="classifier"),
                          i_native)


def test_strided_arrays_are_copied(fitted, x, ref, d):
    flipped = x[::-1]  # negative stride
    assert np.array_equal(fitted.transform(flipped), ref[::-1])
    wide = np.zeros((N, 1, 8, 16), np.float32)
    wide[..., ::2] = x
    assert np.array_equal(fitted.transform(wide[..., ::2]), ref)  # non-contiguous view
    assert np.array_equal(fitted.transform(np.asfortranarray(x)), ref)
    mirrored = np.flip(x, axis=3)
    assert np.array_equal(fitted.transform(mirrored), fitted.transform(mirrored.copy()))
    readonly = x.copy()
    readonly.flags.writeable = False
    assert np.array_equal(fitted.transform(readonly), ref)
    assert np.array_equal(fitted.transform(x.tolist()), ref)  # nested lists
    np.save(d / "x_big_endian.npy", x.astype(">f4"))
    assert np.array_equal(fitted.transform(np.load(d / "x_big_endian.npy", mmap_mode="r")), ref)
    assert np.array_equal(fitted.transform(np.ma.masked_array(x)), ref)  # nothing masked
    with pytest.raises(ValueError, match="masked entries") as e:
        fitted.transform(np.ma.masked_array(x, mask=x > 0.5))
    one_line(e)


def test_other_dtypes_convert_to_their_values(fitted, x):
    u8 = (x * 255).astype(np.uint8)
    assert np.array_equal(fitted.transform(u8),
                          fitted.transform(u8.astype(np.float32) / np.float32(255)))
    f16 = x.astype(np.float16)
    assert np.array_equal(fitted.transform(f16), fitted.transform(f16.astype(np.float32)))
    ints = (x * 100).astype(np.int64)
    for dt in (np.int8, np.int16, np.int32, np.uint16, np.uint32, np.uint64):
        assert np.array_equal(fitted.transform(ints.astype(dt)),
                              fitted.transform(ints.astype(np.float32))), dt


@pytest.mark.parametrize("make,error,match", [
    (lambda x: x > 0.5, TypeError, "dtype bool"),
    (lambda x: x.astype(np.complex64), TypeError, "dtype complex"),
    (lambda x: x.astype(object), TypeError, "dtype object"),
    (lambda x: x.astype(np.longdouble), TypeError, "dtype float128"),
    (lambda x: x.astype("U3"), TypeError, "dtype <U3"),
    (lambda x: x.astype("datetime64[s]"), TypeError, "dtype datetime64"),
    (lambda x: np.zeros(N, dtype=[("a", "f4"), ("b", "f4")]), TypeError, "unsupported array"),
    (lambda x: None, TypeError, "X must be an array"),
    (lambda x: {"a": 1}, TypeError, "X must be an array"),
    (lambda x: [[1.0, 2.0], [3.0]], ValueError, "not an array"),
    (lambda x: np.float32(1), ValueError, "expected an array"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), ValueError,
     "1 NaN and 0 Inf"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, -np.inf, x).astype(">f8"),
     ValueError, "0 NaN and 1 Inf values .first at flat index 7"),
], ids=["bool", "complex", "object", "longdouble", "str", "datetime", "structured", "None",
        "dict", "ragged", "scalar", "nan", "inf-big-endian"])
def test_unreadable_arrays_raise_one_line(fitted, d, x, make, error, match):
    bad = make(x)
    with pytest.raises(error, match=match) as e:
        fitted.transform(bad)
    one_line(e)
    with pytest.raises(error, match=match):
        nfk.fisher_diag(d / "cnn.pt", bad, kind="classifier")


def test_empty_arrays(fitted, d, x):
    # No examples is an error, as in scikit-learn ("Found array with 0 sample(s)").
    with pytest.raises(ValueError, match="holds no values") as e:
        nfk.NFK(d / "cnn.pt", "classifier", rank=2).fit(x[:0])
    one_line(e)
    for empty in [x[:0], np.zeros((0,), np.float32), torch.zeros(0, 1, 8, 8)]:
        with pytest.raises(ValueError, match="holds no values") as e:
            fitted.transform(empty)
        one_line(e)


def test_torch_tensors_of_any_layout_dtype_and_device(fitted, x, ref):
    t = torch.from_numpy(x)
    forms = {
        "requires_grad": t.clone().requires_grad_(),
        "float64": t.double(),
        "channels_last": t.contiguous(memory_format=torch.channels_last),
        "transposed_twice": t.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": torch.cat([t, t], dim=3)[..., :8],
        "sparse": t.to_sparse(),
        "neg_view": torch._neg_view(-t),
    }
    for name, form in forms.items():
        assert np.array_equal(fitted.transform(form), ref), name
    expanded = t[:1].expand(N, 1, 8, 8)  # stride 0
    assert np.array_equal(fitted.transform(expanded), fitted.transform(np.repeat(x[:1], N, 0)))
    half, bf16 = t.half(), t.bfloat16()
    assert np.array_equal(fitted.transform(half), fitted.transform(half.float().numpy()))
    assert np.array_equal(fitted.transform(bf16), fitted.transform(bf16.float().numpy()))
    ints = (t * 100).to(torch.int16)
    assert np.array_equal(fitted.transform(ints), fitted.transform(ints.float().numpy()))
    u8 = (t * 255).to(torch.uint8)
    assert np.array_equal(fitted.transform(u8), fitted.transform(u8.numpy()))
    if torch.cuda.is_available():
        assert np.array_equal(fitted.transform(t.cuda()), ref)
    for bad, error, match in [(t > 0.5, TypeError, "torch.bool"),
                              (t.to(torch.complex64), TypeError, "torch.complex64"),
                              (torch.empty(N, 1, 8, 8, device="meta"), ValueError, "meta"),
                              (torch.quantize_per_tensor(t, 0.1, 0, torch.quint8), TypeError,
                               "quantized")]:
        with pytest.raises(error, match=match) as e:
            fitted.transform(bad)
        one_line(e)
