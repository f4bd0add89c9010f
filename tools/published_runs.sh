#!/usr/bin/env bash
# The benchmark's published runs, in order, each kept in its folder under docs/results as its runs
# finish (launch.zoo --keep): run it again after any stop, on this machine or another, and it goes
# on from what the folders hold. Its workdirs (checkpoints, predictions) go under SCRATCH.
#
#   tools/published_runs.sh SCRATCH
#
# 1. docs/results/benchmark_lff/tune: every method's grids on the LfF protocol at 1%, 2 seeds
#    (it chooses settings; no analyse stage).
# 2. docs/results/benchmark_lff/final: each method at the setting the tuning chose (its headline
#    selection rule), 4 ratios x 5 seeds; its cost is projected from the tuning's measured rates
#    before it trains anything (docs/results/benchmark_lff/projection*.json: from the tuning's
#    rates, and from the quick profile's, measured on a quiet machine).
# 3. docs/results/benchmark_study: the study protocol, the CheaterCNN at 5% and 1%, every method
#    with its full grids, 5 seeds (projected from the quick profile's rates before it starts).
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${1:?usage: tools/published_runs.sh SCRATCH_DIR}
PY=${PYTHON:-python}
OUT=docs/results
LFF=(--config=configs/zoo.py:full --config.run_protocols=lff --config.project_to.run_protocols=lff)

"$PY" -m launch.zoo "${LFF[@]}" --config.ratios='(0.01,)' --config.num_seeds=2 \
  --config.only=train,evaluate,select,report --workdir="$SCRATCH/tune" --keep=$OUT/benchmark_lff/tune

TUNED_LINE=$("$PY" tools/tuned_overrides.py $OUT/benchmark_lff/tune)  # Stops here if it fails.
read -r -a TUNED <<< "$TUNED_LINE"
if [ ! -e $OUT/benchmark_lff/final/config.json ]; then  # Projections made before it trains.
  "$PY" tools/project_cost.py --measured=$OUT/benchmark_lff/tune "${LFF[@]}" "${TUNED[@]}" \
    --json_out=$OUT/benchmark_lff/projection.json
  "$PY" tools/project_cost.py --measured=$OUT/benchmark_quick/results.json "${LFF[@]}" \
    "${TUNED[@]}" --json_out=$OUT/benchmark_lff/projection_from_quick.json
fi
"$PY" -m launch.zoo "${LFF[@]}" "${TUNED[@]}" --workdir="$SCRATCH/final" \
  --keep=$OUT/benchmark_lff/final

STUDY=(--config=configs/zoo.py:full --config.run_protocols=study
       --config.project_to.run_protocols=study --config.protocols.study.models=cheater
       --config.ratios='(0.05,0.01)')
if [ ! -e $OUT/benchmark_study/config.json ]; then
  "$PY" tools/project_cost.py --measured=$OUT/benchmark_quick/results.json "${STUDY[@]}" \
    --json_out=$OUT/benchmark_study/projection_from_quick.json
fi
"$PY" -m launch.zoo "${STUDY[@]}" --workdir="$SCRATCH/study" --keep=$OUT/benchmark_study
