#!/usr/bin/env bash
# The accelerator check; everything is in accelerator_check.py, which needs only the
# standard library, so it starts before the carried wheels are installed. See docs/accelerator.md.
#
#   tools/accelerator_check.sh --prepare          # here, with a network: .whl/ and .mnist/
#   tools/accelerator_check.sh [OUT_DIR]          # on the accelerator (default $OUT)
#   tools/accelerator_check.sh --cpu-smoke DIR    # the whole pipeline at a small size
#
# PYTHON picks the interpreter (default: python3, the one that holds jax).
set -u
exec "${PYTHON:-python3}" "$(dirname "$0")/accelerator_check.py" "$@"
