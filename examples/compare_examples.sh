#!/usr/bin/env bash
# The user workflow of docs/compare.md on the two example problems, end to end:
# data -> train -> compare for a forced Duffing oscillator (examples/duffing.py) and the
# Allen-Cahn equation (examples/allen_cahn.py).  Writes the committed verdicts to
# benchmarks/results/compare_duffing/ and benchmarks/results/compare_allen_cahn/
# (JSON + work-precision and error-vs-time PNGs); the data and models go to out/examples/.
#   bash examples/compare_examples.sh        # ~10 min on 2 cores
set -euo pipefail
OUT=out/examples
mkdir -p "$OUT"
export OMP_NUM_THREADS=1

# forced Duffing: RK4 at h = 0.2, corrector reads the forcing phase (time features)
D=examples/duffing.py
attsolver data generate --rhs $D:rhs --init $D:sample --n 128 --dt 0.2 --t-final 20 --seed 0 -o $OUT/duffing_train.h5
attsolver train --rhs $D:rhs --data $OUT/duffing_train.h5 --method rk4 --corrector attsolver \
    --param 'features=["y","dy","cos:1.2","sin:1.2"]' --epochs 100 --lr 3e-3 --seed 0 --overwrite \
    -o $OUT/duffing.pt
attsolver data generate --rhs $D:rhs --init $D:sample --n 32 --dt 0.2 --t-final 20 --seed 1 -o $OUT/duffing_test.h5
attsolver compare --rhs $D:rhs --data $OUT/duffing_test.h5 --corrector $OUT/duffing.pt --rounds 5 \
    --out benchmarks/results/compare_duffing --name duffing --overwrite

# Allen-Cahn (a user SemilinearPDE subclass): ETDRK4 at h = 0.25, convolutional corrector
A=examples/allen_cahn.py
attsolver data generate --rhs $A:AllenCahn --n 64 --dt 0.25 --t-final 10 --seed 0 -o $OUT/ac_train.h5
attsolver train --rhs $A:AllenCahn --data $OUT/ac_train.h5 --method etdrk4 --corrector attsolver-conv \
    --epochs 60 --lr 3e-3 --seed 0 --overwrite -o $OUT/ac.pt
attsolver data generate --rhs $A:AllenCahn --n 16 --dt 0.25 --t-final 10 --seed 1 -o $OUT/ac_test.h5
attsolver compare --rhs $A:AllenCahn --data $OUT/ac_test.h5 --corrector $OUT/ac.pt --rounds 5 \
    --out benchmarks/results/compare_allen_cahn --name allen_cahn --overwrite
