#!/usr/bin/env bash
# Bad input through the nfk CLI: every case must exit non-zero with exactly one non-empty line on
# stderr (no C++ backtrace) that names what is wrong, and must leave no output file, no temp file
# (`.nfk-*.tmp`) and no change to any existing file behind.
# Usage: bash tests/cli/bad_input.sh path/to/nfk
set -euo pipefail
source "$(dirname "$0")/lib.sh" "$1"
"$py" "$here/make_bad_inputs.py" "$w"

fitargs=(--rank 2 --method exact --quiet)
clf=(--model "$w/clf.pt" --kind classifier)
touch "$w/afile"  # a regular file: paths under it cannot be created (chmod does not stop root)

# 1. wrong kind for the model
expect_fail "kind classifier on a [B,1] discriminator" 'logits' "$o/p.nfk" -- \
  fit --model "$w/disc.pt" --kind classifier --data "$w/x.npy" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "kind vae on a classifier (no elbo)" 'elbo' "$o/p.nfk" -- \
  fit --model "$w/clf.pt" --kind vae --data "$w/x.npy" --out "$o/p.nfk" "${fitargs[@]}"

# 2. data shape does not fit the model
expect_fail "data [20,1,5,5] for an 8x8 conv classifier" 'shape' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x_5x5.npy" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "data [20,64] for an 8x8 conv classifier" 'shape' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x_flat.npy" --out "$o/p.nfk" "${fitargs[@]}"

# 3. non-finite data
expect_fail "NaN in the data" 'nan' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x_nan.npy" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "Inf in the data" 'inf' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x_inf.npy" --out "$o/p.nfk" "${fitargs[@]}"

# 4. non-finite model weights
expect_fail "NaN in a model parameter" 'nan' "$o/p.nfk" -- \
  fit --model "$w/clf_nan.pt" --kind classifier --data "$w/x.npy" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "Inf in a model parameter" 'inf' "$o/p.nfk" -- \
  fit --model "$w/clf_inf.pt" --kind classifier --data "$w/x.npy" --out "$o/p.nfk" "${fitargs[@]}"

# 5. corrupt data files
expect_fail "random bytes as .npy" 'unrecognized|npy' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/random.npy" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "truncated .npy" 'truncated' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/truncated.npy" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "truncated IDX (header claims 20 images, 12 present)" 'truncated' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/truncated-idx3-ubyte" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "IDX with a bad magic number" 'unrecognized|magic' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/badmagic-idx3-ubyte" --out "$o/p.nfk" "${fitargs[@]}"

# 6. gan without its generator / latent dimension
gan=(--model "$w/disc.pt" --kind gan --data "$w/x.npy")
expect_fail "gan without --generator" 'generator' "$o/p.nfk" -- \
  fit "${gan[@]}" --latent-dim 4 --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "gan without --latent-dim" 'latent' "$o/p.nfk" -- \
  fit "${gan[@]}" --generator "$w/gen.pt" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "gan with a missing generator file" 'no such|gen_missing' "$o/p.nfk" -- \
  fit "${gan[@]}" --generator "$w/gen_missing.pt" --latent-dim 4 --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "gan with --latent-dim 7 for a 4-d generator" 'latent|shape' "$o/p.nfk" -- \
  fit "${gan[@]}" --generator "$w/gen.pt" --latent-dim 7 --out "$o/p.nfk" "${fitargs[@]}"

# 7. unwritable outputs
expect_fail "fit --out in a missing folder" 'cannot write' /nonexistent_dir/p.nfk -- \
  fit "${clf[@]}" --data "$w/x.npy" --out /nonexistent_dir/p.nfk "${fitargs[@]}"
[[ ! -e /nonexistent_dir ]] || fail "fit --out in a missing folder" "/nonexistent_dir was created"
expect_fail "fit --out under a regular file" 'cannot write' "$w/afile/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x.npy" --out "$w/afile/p.nfk" "${fitargs[@]}"
expect_fail "fit --embedding-out under a regular file" 'cannot write' "$o/p.nfk" "$w/afile/e.npy" -- \
  fit "${clf[@]}" --data "$w/x.npy" --out "$o/p.nfk" --embedding-out "$w/afile/e.npy" "${fitargs[@]}"
if must "fit a good projector" fit "${clf[@]}" --data "$w/x.npy" --out "$w/good.nfk" "${fitargs[@]}"; then
  expect_fail "transform --out in a missing folder" 'cannot write' /nonexistent_dir/e.npy -- \
    transform --projector "$w/good.nfk" --data "$w/x.npy" --out /nonexistent_dir/e.npy --quiet
  expect_fail "transform --out under a regular file" 'cannot write' "$w/afile/e.npy" -- \
    transform --projector "$w/good.nfk" --data "$w/x.npy" --out "$w/afile/e.npy" --quiet

  # 8. corrupt projectors, and a model changed after the fit
  head -c 2000 /dev/urandom >"$w/random.nfk"
  head -c 300 "$w/good.nfk" >"$w/short-header.nfk"
  size=$(stat -c %s "$w/good.nfk")
  head -c $((size - 10)) "$w/good.nfk" >"$w/short-tail.nfk"
  expect_fail "transform with a random-bytes projector" 'projector|magic' "$o/e.npy" -- \
    transform --projector "$w/random.nfk" --data "$w/x.npy" --out "$o/e.npy" --quiet
  expect_fail "transform with a projector cut in its header" 'truncated' "$o/e.npy" -- \
    transform --projector "$w/short-header.nfk" --data "$w/x.npy" --out "$o/e.npy" --quiet
  expect_fail "transform with a projector cut in its data" 'truncated' "$o/e.npy" -- \
    transform --projector "$w/short-tail.nfk" --data "$w/x.npy" --out "$o/e.npy" --quiet
fi
mkdir -p "$w/moved"
cp "$w/clf.pt" "$w/moved/model.pt"
if must "fit a projector of moved/model.pt" fit --model "$w/moved/model.pt" --kind classifier \
  --data "$w/x.npy" --out "$w/moved/p.nfk" "${fitargs[@]}"; then
  cp "$w/clf_other.pt" "$w/moved/model.pt"  # same architecture, other weights
  expect_fail "transform after the model file was replaced" 'differs|hash' "$o/e.npy" -- \
    transform --projector "$w/moved/p.nfk" --data "$w/x.npy" --out "$o/e.npy" --quiet
  expect_fail "transform --model of another model" 'differs|hash' "$o/e.npy" -- \
    transform --projector "$w/moved/p.nfk" --model "$w/clf_other.pt" --data "$w/x.npy" \
    --out "$o/e.npy" --quiet
  rm "$w/moved/model.pt"
  expect_fail "transform after the model file was removed" 'model\.pt' "$o/e.npy" -- \
    transform --projector "$w/moved/p.nfk" --data "$w/x.npy" --out "$o/e.npy" --quiet
fi

# 9. an existing output survives a failing run (expect_fail's snapshot compares it byte for byte)
if must "fit keep.nfk" fit "${clf[@]}" --data "$w/x.npy" --out "$w/keep.nfk" "${fitargs[@]}"; then
  cp "$w/keep.nfk" "$tmp/keep.orig"
  expect_fail "existing --out kept when the data holds NaN" 'nan' - -- \
    fit "${clf[@]}" --data "$w/x_nan.npy" --out "$w/keep.nfk" "${fitargs[@]}"
  # rank 3: were keep.nfk rewritten, its bytes would differ
  expect_fail "existing --out kept when --embedding-out is unwritable" 'cannot write' "$w/afile/e.npy" -- \
    fit "${clf[@]}" --data "$w/x.npy" --out "$w/keep.nfk" --embedding-out "$w/afile/e.npy" \
    --rank 3 --method exact --quiet
  cp "$tmp/keep.orig" "$w/keep.nfk"  # restored for what follows, had a case changed it
  if must "transform keep.nfk" transform --projector "$w/keep.nfk" --data "$w/x.npy" \
    --out "$w/keep.npy" --quiet; then
      expect_fail "existing transform --out kept when the data holds NaN" 'nan' - -- \
      transform --projector "$w/keep.nfk" --data "$w/x_nan.npy" --out "$w/keep.npy" --quiet
  fi
fi

# 10. rank beyond the number of examples
expect_fail "--rank 21 > 20 examples (exact)" 'rank' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x.npy" --rank 21 --method exact --out "$o/p.nfk" --quiet
expect_fail "--rank 21 > 20 examples (matrix-free)" 'rank' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x.npy" --rank 21 --method matrix-free --out "$o/p.nfk" --quiet

# 11. inputs that hung: a FIFO as --data (open() blocks without a writer), and a 128-byte .npy
# of shape (10**12, 0) (every command walked through 10**12 empty examples)
mkfifo "$w/fifo.npy"
expect_fail "fit --data is a FIFO" 'fifo' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/fifo.npy" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "fit --data of shape (10**12, 0)" 'no values' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x_1e12x0.npy" --out "$o/p.nfk" "${fitargs[@]}"
if [[ -f $w/good.nfk ]]; then
  expect_fail "transform --data is a FIFO, sliced" 'fifo' "$o/e.npy" -- \
    transform --projector "$w/good.nfk" --data "$w/fifo.npy[:5]" --out "$o/e.npy" --quiet
  expect_fail "transform --data of shape (10**12, 0)" 'no values' "$o/e.npy" -- \
    transform --projector "$w/good.nfk" --data "$w/x_1e12x0.npy" --out "$o/e.npy" --quiet
fi

# 12. the classifier's Fisher of p(y|x): labels it cannot use, flags of the other Fisher
expect_fail "fisher --conditional empirical without labels" 'needs labels' "$o/f.npy" -- \
  fisher "${clf[@]}" --conditional --estimator empirical --data "$w/x.npy" --out "$o/f.npy"
expect_fail "fisher --conditional labels out of range" 'class indices' "$o/f.npy" -- \
  fisher "${clf[@]}" --conditional --estimator empirical --labels "$w/y_big.npy" \
  --data "$w/x.npy" --out "$o/f.npy"
expect_fail "fisher --conditional floating labels" 'float|integer' "$o/f.npy" -- \
  fisher "${clf[@]}" --conditional --estimator empirical --labels "$w/y_float.npy" \
  --data "$w/x.npy" --out "$o/f.npy"
expect_fail "fisher --conditional 19 labels for 20 inputs" 'one per input' "$o/f.npy" -- \
  fisher "${clf[@]}" --conditional --estimator empirical --labels "$w/y_short.npy" \
  --data "$w/x.npy" --out "$o/f.npy"
expect_fail "fisher --estimator mc without --conditional" 'conditional' "$o/f.npy" -- \
  fisher "${clf[@]}" --estimator mc --data "$w/x.npy" --out "$o/f.npy"
expect_fail "fisher --tol without --stats" 'add it' "$o/f.npy" -- \
  fisher "${clf[@]}" --conditional --data "$w/x.npy" --tol 1e-3 --out "$o/f.npy"
expect_fail "fisher --stats --tol out of range" 'tol' "$o/f.npy" -- \
  fisher "${clf[@]}" --conditional --stats --data "$w/x.npy" --tol 2 --out "$o/f.npy"
expect_fail "fisher --conditional on a discriminator" 'classifier' "$o/f.npy" -- \
  fisher --model "$w/disc.pt" --kind gan --conditional --data "$w/x.npy" --out "$o/f.npy"
expect_fail "fisher --form kfac with the batched estimator" 'batched' "$o/f.npz" -- \
  fisher "${clf[@]}" --conditional --form kfac --estimator batched --data "$w/x.npy" \
  --labels "$w/y_ok.npy" --out "$o/f.npz"
expect_fail "fisher --form kfac --stats" 'stats' "$o/f.npz" -- \
  fisher "${clf[@]}" --conditional --form kfac --stats --data "$w/x.npy" --out "$o/f.npz"
expect_fail "fisher --conditional NaN in the data" 'nan' "$o/f.npy" -- \
  fisher "${clf[@]}" --conditional --data "$w/x_nan.npy" --out "$o/f.npy"
expect_fail "train classifier --eval-every without a test set" 'eval-every.*test-data' "$o/run" -- \
  train classifier --arch mlp --data 'mnist:train[:64]' --epochs 1 --eval-every 5 --out "$o/run"
# Every trainer loads its data before it makes the output folder: bad --data or --test-data
# leaves nothing behind.
for family in classifier gan vae density; do
  expect_fail "train $family with unreadable --data" 'cannot read' "$o/run_$family" -- \
    train "$family" --data "$w/none.npy" --epochs 1 --out "$o/run_$family"
  expect_fail "train $family with NaN in --test-data" 'NaN' "$o/run_$family" -- \
    train "$family" --data 'mnist:train[:64]' --test-data "$w/x_nan.npy" --epochs 1 \
    --out "$o/run_$family"
done
NFK_DATA_DIR="$w/no-data" expect_fail "continual without the benchmark's data" 'mnist' \
  "$o/continual" -- continual --benchmark permuted-mnist --tasks 2 --out "$o/continual" --quiet

finish
