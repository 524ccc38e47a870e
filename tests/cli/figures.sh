#!/usr/bin/env bash
# The CLI's figures go through the Python package's matplotlib module (python/nfk/plot.py, found
# as share/nfk/plot.py beside the binary): --plot, --heatmap, --grid and the trainers' sample
# grids write real PNG / SVG / PDF files; a wrong suffix, or no Python with matplotlib, is one line
# before any work and writes nothing; a trainer without them warns once and goes on.
# Usage: bash tests/cli/figures.sh path/to/nfk
set -euo pipefail
source "$(dirname "$0")/lib.sh" "$1"

is_png() { [[ $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; }
is_svg() { grep -q '<svg' "$1"; }
is_pdf() { [[ $(head -c 5 "$1") == %PDF- ]]; }

must "classifier" train classifier --arch mlp --data 'mnist:train[:256]' --epochs 1 \
  --out "$w/clf" --quiet
must "projector" fit --model "$w/clf/classifier.zoo" --kind classifier \
  --data 'mnist:train[:128]' --rank 4 --out "$w/p.nfk" --quiet

for ext in png svg pdf; do
  must "spectrum --plot .$ext" spectrum --projector "$w/p.nfk" --plot "$w/spectrum.$ext"
  check "spectrum --plot .$ext is a $ext file" "is_$ext" "$w/spectrum.$ext"
done
check "the spectrum plot is a picture of some size" \
  test "$(stat -c %s "$w/spectrum.png")" -gt 5000

must "class-distance heat map" distance --projector "$w/p.nfk" --data 'mnist:test[:200]' \
  --heatmap "$w/classes.svg" --quiet --json
check "--heatmap is an SVG with the ten class labels" \
  bash -c "is_svg() { grep -q '<svg' \"\$1\"; }; is_svg '$w/classes.svg' && grep -c '<g id=\"text_' '$w/classes.svg' | awk '\$1 >= 20 {ok=1} END {exit !ok}'"

must "train embedding" transform --projector "$w/p.nfk" --data 'mnist:train[:128]' \
  --out "$w/tr.npy" --quiet
must "test embedding" transform --projector "$w/p.nfk" --data 'mnist:test[:32]' \
  --out "$w/te.npy" --quiet
must "knn --grid" knn --train "$w/tr.npy" --train-labels 'mnist:train[:128]' --test "$w/te.npy" \
  --test-labels 'mnist:test[:32]' --k 3 --grid "$w/neighbours.png" \
  --train-images 'mnist:train[:128]' --test-images 'mnist:test[:32]' --queries 4 --json
check "knn --grid is a PNG" is_png "$w/neighbours.png"

must "train vae with sample pictures" train vae --data 'mnist:train[:128]' --epochs 1 \
  --latent-dim 2 --width 4 --out "$w/vae" --quiet
check "train vae drew samples.png" is_png "$w/vae/samples.png"
check "train vae drew reconstructions.png" is_png "$w/vae/reconstructions.png"

# Refused before any work, one line, nothing written.
expect_fail "a suffix matplotlib is not asked for" '\.png, \.svg or \.pdf' "$o/s.jpg" -- \
  spectrum --projector "$w/p.nfk" --plot "$o/s.jpg"
NFK_PYTHON=/nonexistent/python3 expect_fail "no Python for --plot" 'NFK_PYTHON' "$o/s.png" -- \
  spectrum --projector "$w/p.nfk" --plot "$o/s.png"
NFK_PYTHON=/nonexistent/python3 expect_fail "no Python for --heatmap" 'matplotlib' "$o/h.png" \
  "$o/d.npy" -- distance --projector "$w/p.nfk" --data 'mnist:test[:200]' --heatmap "$o/h.png" \
  --out "$o/d.npy" --quiet
NFK_PLOT_SCRIPT=/nonexistent/plot.py expect_fail "no plotting module" 'plot\.py' "$o/s.png" -- \
  spectrum --projector "$w/p.nfk" --plot "$o/s.png"

# A trainer without Python: one warning line, the model written, no pictures.
rc=0
NFK_PYTHON=/nonexistent/python3 "$nfk" train vae --data 'mnist:train[:128]' --epochs 1 \
  --latent-dim 2 --width 4 --out "$o/vae" --quiet >"$log/stdout" 2>"$log/stderr" || rc=$?
check "train vae without Python succeeds" test "$rc" -eq 0
check "train vae without Python warns in one line" \
  test "$(grep -c 'no sample pictures' "$log/stderr")" -eq 1
check "train vae without Python writes the model and no pictures" \
  bash -c "test -f '$o/vae/vae.zoo' && ! test -e '$o/vae/samples.png'"
rm -rf "$o/vae"

finish
