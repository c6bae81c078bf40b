#!/usr/bin/env bash
# Wheels that the lent GPU machine lacks for scripts/paper_scale.py (Python 3.12 there; the rest,
# JAX with CUDA, NumPy, SciPy, pandas, pyarrow, h5py, rich, tqdm, is installed). Run in the repo
# root; the wheels land in .whl/ (git-ignored through .git/info/exclude), which the run carries.
# numba is left out (with llvmlite ~45 MB of the 64 MiB a run carries): the running median then
# stays on bottleneck's double heap, the same values, and ample on 16 cores.
#   bash scripts/device_wheels.sh
#   run: python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#        && export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax \
#        && python3 scripts/paper_scale.py --out $OUT/model --work /tmp/paper --budget-s 540
set -euo pipefail
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl \
  keras==3.15.1 namex==0.1.0 optree==0.20.0 zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 \
  google-crc32c==1.9.0 bottleneck==1.6.0
du -sh .whl
