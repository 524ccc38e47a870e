#!/usr/bin/env bash
# What nfk does to the paths a user points it at, and to inputs that would give silent garbage
# (issue "Reliability"): outputs never destroy what is at the path or an input of the same
# command, crafted projectors are one line (never a crash), non-finite results are never
# written, log-probability classifiers are refused, options are validated, FIFOs never hang,
# warnings are one line.
# Usage: bash tests/cli/reliability.sh path/to/nfk
set -euo pipefail
source "$(dirname "$0")/lib.sh" "$1"
"$py" "$here/make_reliability_inputs.py" "$w"

fitargs=(--rank 2 --method exact --quiet)
clf=(--model "$w/clf.pt" --kind classifier)

# --- outputs ------------------------------------------------------------------------------------
expect_fail "fit --out equal to --model" 'also an input' - -- \
  fit "${clf[@]}" --data "$w/x.npy" --out "$w/clf.pt" "${fitargs[@]}"
expect_fail "fit --out equal to --data (with a slice)" 'also an input' - -- \
  fit "${clf[@]}" --data "$w/x.npy[:10]" --out "$w/x.npy" "${fitargs[@]}"
ln -s clf.pt "$w/link-to-model.pt"
expect_fail "fit --out a symlink to --model" 'also an input' - -- \
  fit "${clf[@]}" --data "$w/x.npy" --out "$w/link-to-model.pt" "${fitargs[@]}"
expect_fail "fit --embedding-out equal to --out" 'same file' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x.npy" --out "$o/p.nfk" --embedding-out "$o/p.nfk" "${fitargs[@]}"
expect_fail "fit --out a directory" 'directory' - -- \
  fit "${clf[@]}" --data "$w/x.npy" --out "$o" "${fitargs[@]}"
mkfifo "$w/fifo-out"
expect_fail "fit --out a FIFO with no reader" 'no reader' - -- \
  fit "${clf[@]}" --data "$w/x.npy" --out "$w/fifo-out" "${fitargs[@]}"
expect_fail "fit --embedding-out /dev/full: neither output written" 'no space' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x.npy" --out "$o/p.nfk" --embedding-out /dev/full "${fitargs[@]}"

must "fit a good projector" fit "${clf[@]}" --data "$w/x.npy" --out "$w/good.nfk" "${fitargs[@]}"
expect_fail "transform --out equal to --projector" 'also an input' - -- \
  transform --projector "$w/good.nfk" --data "$w/x.npy" --out "$w/good.nfk" --quiet
expect_fail "transform --out equal to the projector's model" 'also an input' - -- \
  transform --projector "$w/good.nfk" --data "$w/x.npy" --out "$w/clf.pt" --quiet

if [[ -c /dev/null ]]; then
  must "fit --out /dev/null" fit "${clf[@]}" --data "$w/x.npy" --out /dev/null "${fitargs[@]}"
  check "/dev/null is still a character device" test -c /dev/null
fi
(cat "$w/fifo-out" >"$tmp/from-fifo.nfk") &
reader=$!
must "fit --out a FIFO with a reader" fit "${clf[@]}" --data "$w/x.npy" --out "$w/fifo-out" "${fitargs[@]}"
wait "$reader"
check "the FIFO is still a FIFO" test -p "$w/fifo-out"
check "the FIFO's reader got the projector" cmp -s "$tmp/from-fifo.nfk" "$w/good.nfk"

mkdir -p "$tmp/targets"
ln -s "$tmp/targets/p.nfk" "$w/link.nfk"  # dangling until the fit
must "fit --out a dangling symlink" fit "${clf[@]}" --data "$w/x.npy" --out "$w/link.nfk" "${fitargs[@]}"
check "the symlink is still a symlink" test -L "$w/link.nfk"
check "its target holds the projector" cmp -s "$tmp/targets/p.nfk" "$w/good.nfk"
chmod 600 "$tmp/targets/p.nfk"
must "fit --out an existing symlink" fit "${clf[@]}" --data "$w/x.npy" --out "$w/link.nfk" "${fitargs[@]}"
check "the replaced file keeps its mode 600" test "$(stat -c %a "$tmp/targets/p.nfk")" = 600
long=$(printf 'p%.0s' $(seq 1 250)).nfk  # 254 characters: the longest name but one
must "fit --out a 254-character file name" fit "${clf[@]}" --data "$w/x.npy" --out "$tmp/$long" "${fitargs[@]}"
check "the 254-character output exists" test -s "$tmp/$long"
check "no temp file left anywhere" test -z "$(find "$tmp" -name '.nfk-*.tmp')"

# --- crafted projectors: one line, never a crash ----------------------------------------------
craft() {  # name, mutation
  "$py" "$here/craft_projector.py" "$w/good.nfk" "$w/$1.nfk" "$2"
}
projector_case() {  # name, keyword, mutation
  craft "$1" "$3"
  expect_fail "projector: $1" "$2" "$o/e.npy" -- \
    transform --projector "$w/$1.nfk" --data "$w/x.npy" --out "$o/e.npy" --quiet
}
projector_case flipped-data-bit 'checksum' flip-data
projector_case flipped-header-bit 'checksum' flip-header
projector_case huge-offset 'truncated|range' "header:t['basis']['offset'] = 2**64 - 1"
projector_case negative-offset 'range' "header:t['basis']['offset'] = -8"
projector_case float-offset 'integer' "header:t['basis']['offset'] = 1e300"
projector_case huge-shape 'large|shape|byte count' "header:t['basis']['shape'] = [2**40, 2**40]"
projector_case wrapping-shape 'large|shape|byte count' "header:t['basis']['shape'] = [2**62, 4]"
projector_case negative-shape 'shape' "header:t['basis']['shape'] = [-1, 2]"
projector_case huge-nbytes 'byte count|range' "header:t['basis']['nbytes'] = 2**63"
projector_case huge-rank 'range|rank' "header:h['svd']['rank'] = 2**70"
projector_case negative-sigma 'negative singular' data:singular_values:-1
projector_case nan-sigma 'nan' data:singular_values:nan
projector_case zero-fisher 'not positive' data:fisher_diag:0
projector_case string-version 'corrupt|version' "header:h['version'] = 'x'"
projector_case missing-tensor 'missing' "header:h['tensors'] = h['tensors'][1:]"
mkfifo "$w/fifo.nfk"
expect_fail "projector: a FIFO" 'fifo' "$o/e.npy" -- \
  transform --projector "$w/fifo.nfk" --data "$w/x.npy" --out "$o/e.npy" --quiet
expect_fail "projector: a directory" "$(basename "$o")" "$o/e.npy" -- \
  transform --projector "$o" --data "$w/x.npy" --out "$o/e.npy" --quiet
mkfifo "$w/fifo.pt"
expect_fail "model: a FIFO" 'fifo' "$o/p.nfk" -- \
  fit --model "$w/fifo.pt" --kind classifier --data "$w/x.npy" --out "$o/p.nfk" "${fitargs[@]}"

# --- non-finite results are never written ----------------------------------------------------
must "fit a linear classifier" fit --model "$w/clf_linear.pt" --kind classifier --data "$w/x.npy" \
  --out "$w/linear.nfk" "${fitargs[@]}"
expect_fail "transform of finite data whose result overflows float32" 'nan or inf' "$o/e.npy" -- \
  transform --projector "$w/linear.nfk" --data "$w/x_huge.npy" --out "$o/e.npy" --quiet
expect_fail "fisher of finite data whose gradients overflow float32" 'nan or inf' "$o/i.npy" -- \
  fisher --model "$w/clf_linear.pt" --kind classifier --data "$w/x_huge.npy" --out "$o/i.npy" --quiet
must "fit the NaN-where-negative model on positive data" fit --model "$w/clf_nan_some.pt" \
  --kind classifier --data "$w/x_pos.npy" --out "$w/nan_some.nfk" "${fitargs[@]}"
expect_fail "transform where the model gives NaN from row 5" 'row 5 ' "$o/e.npy" -- \
  transform --projector "$w/nan_some.nfk" --data "$w/x_neg5.npy" --out "$o/e.npy" --quiet
# A GAN: z and I from generator samples (finite), the data NaN from row 5 on.
nan_gan=(--model "$w/disc_nan_some.pt" --kind gan --generator "$w/gen_positive.pt" --latent-dim 4
         --data "$w/x_neg5.npy" --rank 2 --quiet)
expect_fail "fit where D is NaN from row 5 of the data (resident V)" 'example 5 is NaN' "$o/p.nfk" -- \
  fit "${nan_gan[@]}" --method per-example --out "$o/p.nfk"
expect_fail "fit where D is NaN on some data (matrix-free)" 'product with the Fisher vectors V is NaN' "$o/p.nfk" -- \
  fit "${nan_gan[@]}" --method matrix-free --out "$o/p.nfk"
expect_fail "fisher where the model gives NaN" 'nan' "$o/i.npy" -- \
  fisher --model "$w/clf_nan_some.pt" --kind classifier --data "$w/x_neg5.npy" --out "$o/i.npy" --quiet

# --- users' transformers (nn.TransformerEncoderLayer, batch_first) --------------------------------
expect_fail "a transformer traced under torch.no_grad (fused kernel, no gradient)" 'no gradient' "$o/p.nfk" -- \
  fit --model "$w/transformer_traced_nograd.pt" --kind classifier --data "$w/x.npy" --out "$o/p.nfk" "${fitargs[@]}"
for form in scripted traced; do
  for method in exact per-example matrix-free; do
    must "transformer ($form) by $method" fit --model "$w/transformer_$form.pt" --kind classifier \
      --data "$w/x.npy" --rank 4 --dtype float64 --method $method --out "$tmp/tf_${form}_$method.nfk" --quiet
    "$nfk" spectrum --projector "$tmp/tf_${form}_$method.nfk" --json >"$tmp/tf_${form}_$method.json"
  done
done
check "every transformer fit gives the exact spectrum (1e-8)" "$py" -c "
import json, sys
s = [json.load(open('$tmp/tf_' + f + '_' + m + '.json'))['singular_values']
     for f in ('scripted', 'traced') for m in ('exact', 'per-example', 'matrix-free')]
ref = s[0]
sys.exit(0 if all(abs(a - b) <= 1e-8 * abs(b) for t in s for a, b in zip(t, ref)) else 1)"

# --- float32 matrix-free where centring after contraction loses everything to rounding ---------
expect_fail "matrix-free float32 on 1e-10-scale data" 'cannot resolve.*per-example' "$o/p.nfk" -- \
  fit "${clf[@]}" --data "$w/x_tiny.npy" --rank 2 --method matrix-free --out "$o/p.nfk" --quiet
must "per-example float32 on 1e-10-scale data" fit "${clf[@]}" --data "$w/x_tiny.npy" --rank 2 \
  --method per-example --out "$tmp/tiny_pe.nfk" --quiet
must "matrix-free float64 on 1e-10-scale data" fit "${clf[@]}" --data "$w/x_tiny.npy" --rank 2 \
  --method matrix-free --dtype float64 --out "$tmp/tiny_mf64.nfk" --quiet

# --- models whose score is meaningless -------------------------------------------------------
expect_fail "classifier ending in log_softmax" 'log_softmax' "$o/p.nfk" -- \
  fit --model "$w/clf_logsoftmax.pt" --kind classifier --data "$w/x.npy" --out "$o/p.nfk" "${fitargs[@]}"
expect_fail "classifier ending in softmax" 'softmax' "$o/p.nfk" -- \
  fit --model "$w/clf_softmax.pt" --kind classifier --data "$w/x.npy" --out "$o/p.nfk" "${fitargs[@]}"
# A model saved in training mode: evaluated in eval mode, with one warning line.
must "fit a model saved in training mode" fit --model "$w/clf_train.pt" --kind classifier \
  --data "$w/x.npy" --out "$w/train.nfk" "${fitargs[@]}"
check "one warning line says it was in training mode" \
  test "$(grep -c . "$log/stderr")" = 1 -a "$(grep -ci 'training mode' "$log/stderr")" = 1

# --- messages that say what the model expects -------------------------------------------------
"$py" -c "import numpy as np; np.save('$w/x_5x5.npy', np.zeros((4, 1, 5, 5), np.float32)); \
np.save('$w/y_gap.npy', np.array([0, 1, 3] * 6 + [0, 1], np.int64))"
expect_fail "transform of data of another shape names the fitted shape" 'expects \[N, 1, 8, 8\]' "$o/e.npy" -- \
  transform --projector "$w/good.nfk" --data "$w/x_5x5.npy" --out "$o/e.npy" --quiet
expect_fail "distance --a of another shape names the fitted shape" 'fitted on examples of shape \[1, 8, 8\]' - -- \
  distance --projector "$w/good.nfk" --a "$w/x.npy" --b "$w/x_5x5.npy"
expect_fail "class distances with a label that has no example" 'label 2 has no example' "$o/d.npy" -- \
  distance --projector "$w/good.nfk" --data "$w/x.npy" --labels "$w/y_gap.npy" --out "$o/d.npy"

# --- a fit killed mid-way resumes to the uninterrupted projector, bit for bit -----------------
long_fit=(--model "$w/clf.pt" --kind classifier --data "$w/x_240.npy" --rank 4
          --method matrix-free --power-iters 150 --seed 3)
# A checkpointed fit runs the resumable form of the SVD (subspace iteration, all iterations; see
# plan_fit), so the uninterrupted reference is checkpointed too.
must "uninterrupted long fit" fit "${long_fit[@]}" --checkpoint "$tmp/ckpt_full" \
  --out "$tmp/uninterrupted.nfk" --quiet
"$nfk" fit "${long_fit[@]}" --checkpoint "$tmp/ckpt" --out "$tmp/resumed.nfk" --quiet &
pid=$!
for _ in $(seq 600); do  # until 20 power iterations are saved
  grep -Eqs '"iteration": ([2-9][0-9]|1[0-9][0-9])' "$tmp/ckpt/checkpoint.json" && break
  sleep 0.1
done
kill -9 $pid 2> /dev/null || fail "kill and resume" "the fit ended before it could be killed"
wait $pid 2> /dev/null || true
check "the killed fit wrote no projector" test ! -e "$tmp/resumed.nfk"
check "the killed fit left its checkpoint" test -s "$tmp/ckpt/checkpoint.json"
iteration=$(grep -Eo '"iteration": [0-9]+' "$tmp/ckpt/checkpoint.json" | grep -Eo '[0-9]+$')
echo "  killed after power iteration $iteration of 150"
expect_fail "--resume with other options" 'another fit' "$o/p.nfk" -- \
  fit "${long_fit[@]/--rank/--oversample}" --checkpoint "$tmp/ckpt" --resume --out "$o/p.nfk" --quiet
must "resumed long fit" fit "${long_fit[@]}" --checkpoint "$tmp/ckpt" --resume \
  --out "$tmp/resumed.nfk" --quiet
check "the resumed projector is the uninterrupted one, bit for bit" \
  cmp "$tmp/uninterrupted.nfk" "$tmp/resumed.nfk"

# --- options ---------------------------------------------------------------------------------
for bad in "--memory-budget -1" "--memory-budget 9e15" "--memory-budget 99999999999" \
  "--dist-timeout 1e300" "--dist-timeout 0" "--dist-timeout nan" "--fisher-floor inf" \
  "--fisher-floor nan" "--fisher-floor 0" "--rank 0" "--rank -3" "--batch-size 0" \
  "--power-iters -1" "--oversample 1e3" "--nproc 0"; do
  read -r -a flag <<<"$bad"
  expect_fail "option $bad" "${flag[0]#--}|expected" "$o/p.nfk" -- \
    fit "${clf[@]}" --data "$w/x.npy" --out "$o/p.nfk" --quiet "${flag[@]}"
  line=$(cat "$log/stderr")
  ((${#line} < 200)) || fail "option $bad" "message of ${#line} characters"
done

finish
