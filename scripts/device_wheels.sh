#!/usr/bin/env bash
# Wheels that the lent GPU machine lacks for scripts/paper_scale.py (Python 3.12 there; the rest,
# JAX with CUDA, NumPy, SciPy, pandas, pyarrow, h5py, rich, tqdm, is installed). Run in the repo
# root; the wheels land in .whl/ (git-ignored through .git/info/exclude), which the run carries.
# numba and llvmlite are there (0.68.0 seen on 2026-12-04), so the sort-median runs as here.
# The run itself: scripts/paper_scale_device.sh (carry .whl).
set -euo pipefail
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl \
  keras==3.15.1 namex==0.1.0 optree==0.20.0 zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 \
  google-crc32c==1.9.0 bottleneck==1.6.0
du -sh .whl
