#!/usr/bin/env bash
# TorchScript files written by PyTorch (python3-torch) through the nfk CLI: `nfk fit` by every
# method in float64 must reproduce the NFK spectrum computed independently in Python, and
# `nfk transform` of the training points must equal Phi diag(sigma).
# Usage: bash tests/cli/torchscript_interop.sh path/to/nfk
set -euo pipefail
nfk=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3  # Debian's python3 with python3-torch and python3-numpy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$py" "$here/torchscript_interop.py" make "$tmp"
fit() {  # name, method, model args...
  local name=$1 method=$2
  shift 2
  "$nfk" fit "$@" --data "$tmp/x.npy" --rank 16 --dtype float64 --method "$method" \
    --batch-size 32 --out "$tmp/$name.nfk" --embedding-out "$tmp/${name}_train.npy" --quiet
  "$nfk" spectrum --projector "$tmp/$name.nfk" --json > "$tmp/$name.json"
  "$nfk" transform --projector "$tmp/$name.nfk" --data "$tmp/x.npy" \
    --out "$tmp/${name}_transform.npy" --quiet
}
cnn=(--model "$tmp/cnn.pt" --kind classifier)
gan=(--model "$tmp/disc.pt" --kind gan --generator "$tmp/gen.pt" --latent-dim 4
     --estimator empirical)
fit cnn_exact exact "${cnn[@]}"
fit cnn_matrix_free matrix-free "${cnn[@]}"
fit cnn_per_example per-example "${cnn[@]}"
fit gan_exact exact "${gan[@]}"
fit gan_matrix_free matrix-free "${gan[@]}"
# Scripted and traced nn.Module CNNs with batch/group/layer norms: the per-example method must
# take the TorchScript layer tape (one backward per batch), not the per-example loop.
for how in scripted traced; do
  fit "norm_${how}_per_example" per-example --model "$tmp/norm_$how.pt" --kind classifier \
    2> "$tmp/norm_$how.log"
  if grep -q "fall back" "$tmp/norm_$how.log"; then
    echo "FAIL: $how TorchScript CNN fell back to the per-example loop:"; cat "$tmp/norm_$how.log"
    exit 1
  fi
  echo "ok: $how TorchScript CNN used the layer tape"
done
"$py" "$here/torchscript_interop.py" check "$tmp"
