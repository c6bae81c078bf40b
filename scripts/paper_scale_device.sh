#!/usr/bin/env bash
# The lent GPU machine's one command: install the carried wheels (scripts/device_wheels.sh), record
# the machine, run scripts/paper_scale.py with its log. Everything it keeps is written under $OUT
# (8 files, what a call may return): machine.txt, log.txt, trained/ (the model as soon as training
# ends), model/ (calibrated), run.tar (the run's state). A run.tar of an earlier machine put in .whl/
# is resumed. From the repo root, carrying .whl:  BUDGET=555 bash scripts/paper_scale_device.sh
# BUDGET is --budget-s (leave ~40 s of a 600 s command for the install and imports), CALIBRATION_S
# --calibration-s; EXTRA adds arguments (e.g. "--n 4096" to try it small).
set -o pipefail
: "${OUT:?OUT: the folder whose files come back}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 3
# the compiled steps are kept beside the mocks: a call that resumes on the same (warm) machine skips
# the ~20 s of compiling its first epoch
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/paper/jax_cache
mkdir -p "$OUT"
{ date -u; nvidia-smi -L; nproc; lscpu | grep 'Model name'; free -g | head -2
  python3 -c "import jax, keras, numpy, numba, zarr; print('jax', jax.__version__, jax.devices(), 'keras', \
keras.__version__, 'numpy', numpy.__version__, 'numba', numba.__version__, 'zarr', zarr.__version__)"
} 2>&1 | tee "$OUT/machine.txt"
# shellcheck disable=SC2086  # EXTRA is a list of arguments
RESUME=(); [ -f .whl/run.tar ] && RESUME=(--resume-from .whl/run.tar)
python3 scripts/paper_scale.py --out "$OUT/model" --trained-out "$OUT/trained" --run-out "$OUT/run.tar" \
  --work /tmp/paper --budget-s "${BUDGET:-555}" --calibration-s "${CALIBRATION_S:-90}" "${RESUME[@]}" ${EXTRA:-} 2>&1 \
  | grep --line-buffered -v '^\s*$' | tee -a "$OUT/log.txt"
