#!/usr/bin/env bash
# nfk distill end to end on small MNIST slices (issue "Knowledge distillation"): none, kd and
# nfkd students train for 2 epochs and are usable zoo classifiers; nfkd's targets are the rows
# `nfk transform` gives with the teacher's projector; a rerun repeats the numbers; bad input is
# one line. Usage: bash tests/cli/distill.sh path/to/nfk
set -euo pipefail
source "$(dirname "$0")/lib.sh" "$1"

train='mnist:train[:512]'
test='mnist:test[:256]'
must "teacher" train classifier --arch lenet5 --data 'mnist:train[:1000]' --epochs 1 \
  --out "$w/teacher" --quiet
teacher=$w/teacher/classifier.zoo
base=(--test-data "$test" --epochs 2 --batch-size 64 --hidden 32 --quiet)
common=(--teacher "$teacher" --data "$train" "${base[@]}")

accuracy() {  # result.json → mean test accuracy
  "$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["test_accuracy_mean"])' "$1"
}
sane() {  # result.json: a finite accuracy above chance after 2 epochs, student files written
  "$py" - "$1" <<'EOF'
import json, math, os, sys
r = json.load(open(sys.argv[1]))
acc = r["test_accuracy_mean"]
assert math.isfinite(acc) and 0.2 < acc <= 1, acc
assert 0.2 < r["teacher_test_accuracy"] <= 1, r["teacher_test_accuracy"]
for s in r["seeds"]:
    assert os.path.isfile(os.path.join(s["out"], "student.zoo")), s
    log = json.load(open(os.path.join(s["out"], "train_log.json")))
    assert len(log["epochs"]) == 2 and all(math.isfinite(e["loss"]) for e in log["epochs"]), log
EOF
}

for method in none kd; do
  must "distill $method" distill "${common[@]}" --method "$method" --out "$w/$method"
  check "distill $method: result sane" sane "$w/$method/result.json"
done
must "distill nfkd, 100 labels" distill "${common[@]}" --method nfkd --rank 4 --labelled 100 \
  --out "$w/nfkd"
check "distill nfkd: result sane" sane "$w/nfkd/result.json"
check "distill nfkd: head written" test -f "$w/nfkd/seed_0/head.zoo"

# Q_t rows are nfk transform's rows of the same images, scaled to mean squared norm 1.
must "transform with the teacher's projector" transform --projector "$w/nfkd/teacher_nfk.nfk" \
  --data "$train" --out "$w/e.npy" --quiet
same_targets() {
  "$py" - "$w/nfkd/nfk_targets.npy" "$w/e.npy" "$w/nfkd/result.json" <<'EOF'
import json, sys
import numpy as np
q, e = np.load(sys.argv[1]), np.load(sys.argv[2])[:, :4]
assert q.shape == e.shape == (512, 4), (q.shape, e.shape)
err = np.abs(q - e).max() / np.abs(e).max()
assert err < 1e-5, err
scale = json.load(open(sys.argv[3]))["target_scale"]
ms = float(np.mean(np.sum((q.astype(np.float64) / scale) ** 2, axis=1)))
assert abs(ms - 1) < 1e-5, ms
EOF
}
check "nfkd targets equal nfk transform" same_targets

# Targets given as a file (an earlier run's) train the same student as the run that made them.
must "distill nfkd from --targets" distill "${common[@]}" --method nfkd --rank 4 --labelled 100 \
  --targets "$w/nfkd/nfk_targets.npy" --out "$w/nfkd-file"
check "targets from a file give the same accuracy" \
  test "$(accuracy "$w/nfkd-file/result.json")" = "$(accuracy "$w/nfkd/result.json")"

# The student is a zoo classifier every nfk command reads.
must "fit the student's NFK" fit --model "$w/nfkd/seed_0/student.zoo" --kind classifier \
  --data "$test" --rank 2 --out "$w/student.nfk" --quiet
# The same command gives the same numbers (and resuming a finished run changes nothing).
first=$(accuracy "$w/nfkd/result.json")
must "distill nfkd, resumed" distill "${common[@]}" --method nfkd --rank 4 --labelled 100 \
  --out "$w/nfkd"
check "resumed run repeats the accuracy" test "$(accuracy "$w/nfkd/result.json")" = "$first"
must "distill nfkd, afresh" distill "${common[@]}" --method nfkd --rank 4 --labelled 100 \
  --out "$w/nfkd" --no-resume
check "rerun repeats the accuracy" test "$(accuracy "$w/nfkd/result.json")" = "$first"

# A TorchScript teacher (the user's own module) and a WideResNet student.
cat >"$w/ts_teacher.py" <<'EOF'
import sys
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(784, 32)
        self.b = torch.nn.Linear(32, 10)

    def forward(self, x):
        return self.b(torch.relu(self.a(x.flatten(1))))


torch.manual_seed(0)
torch.jit.script(Net()).save(sys.argv[1])
EOF
"$py" "$w/ts_teacher.py" "$w/ts_teacher.pt"  # a file: torch.jit.script reads the source
must "TorchScript teacher, wrn student" distill --teacher "$w/ts_teacher.pt" --data "$train" \
  --test-data "$test" --epochs 1 --student-arch wrn --depth 10 --method nfkd --rank 3 \
  --out "$w/ts" --quiet
check "TorchScript teacher: targets and student written" \
  test -f "$w/ts/nfk_targets.npy" -a -f "$w/ts/seed_0/student.zoo" -a -f "$w/ts/seed_0/head.zoo"

# --- bad input: one line, nothing written -------------------------------------------------------
expect_fail "missing teacher" 'no such file|not found|does not exist' "$o/r" -- \
  distill "${base[@]}" --data "$train" --teacher "$w/nope.pt" --method kd --out "$o/r"
expect_fail "more labels than examples" 'exceeds' "$o/r" -- \
  distill "${common[@]}" --method none --labelled 513 --out "$o/r"
expect_fail "projector with kd" 'nfkd only' "$o/r" -- \
  distill "${common[@]}" --method kd --projector "$w/nfkd/teacher_nfk.nfk" --out "$o/r"
expect_fail "projector of another model" 'another model|parameters' "$o/r" -- \
  distill "${common[@]}" --method nfkd --projector "$w/student.nfk" --out "$o/r"
expect_fail "rank above the projector's" 'exceeds' "$o/r" -- \
  distill "${common[@]}" --method nfkd --rank 9 --projector "$w/nfkd/teacher_nfk.nfk" --out "$o/r"
expect_fail "targets of another length" 'rows for 500' "$o/r" -- \
  distill "${base[@]}" --teacher "$teacher" --data 'mnist:train[:500]' --method nfkd --rank 2 \
  --targets "$w/e.npy" --out "$o/r"
expect_fail "projector and targets" 'not both' "$o/r" -- \
  distill "${common[@]}" --method nfkd --projector "$w/nfkd/teacher_nfk.nfk" \
  --targets "$w/e.npy" --out "$o/r"
expect_fail "alpha above 1" 'alpha' "$o/r" -- \
  distill "${common[@]}" --method kd --alpha 1.5 --out "$o/r"
touch "$w/a-file"
expect_fail "out is a file" 'not a folder' - -- \
  distill "${common[@]}" --method none --out "$w/a-file"
expect_fail "unlabelled training set" 'no labels' "$o/r" -- \
  distill "${base[@]}" --teacher "$teacher" --method none --data "$w/e.npy" --out "$o/r"
expect_fail "labels of another length" '100 labels for 512' "$o/r" -- \
  distill "${common[@]}" --method none --train-labels 'mnist:train[:100]' --out "$o/r"
finish
