#!/usr/bin/env bash
# Set up .venv at the repository root and run the main job or the whole test suite.
#
#   bash scripts/setup.sh demo   # install, then run the offline demo (HTML report in attnprompt-demo/)
#   bash scripts/setup.sh test   # install with every extra, then run the whole test suite
#
# Safe to rerun: an existing .venv is reused. PYTHON picks the interpreter (default python3);
# TORCH_SPEC overrides the torch/torchvision requirement (e.g. "torch torchvision" for the latest).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-test}"
case "$mode" in demo|test) ;; *) echo "usage: bash scripts/setup.sh demo|test" >&2; exit 2 ;; esac

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --disable-pip-version-check)
# An old pip does not normalise extra names (open_clip vs open-clip, PEP 685) and would skip the
# open_clip extra without an error.
"${pip[@]}" --quiet "pip>=24.1"

# torch + torchvision as a pair that imports together (open_clip needs torchvision). On this
# project's Linux machines these releases sit on local disk; elsewhere pip fetches them.
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  if [ -n "${TORCH_SPEC:-}" ]; then
    spec="$TORCH_SPEC"
  else
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) spec="torch==2.14.1 torchvision==0.29.1" ;;
      Linux-aarch64) spec="torch==2.9.1 torchvision==0.24.1" ;;
      *) spec="torch torchvision" ;;
    esac
  fi
  # shellcheck disable=SC2086
  "${pip[@]}" $spec
fi
if [ "$mode" = test ]; then
  # lmms-eval too, so the plugin is tested against the real registry; its llava_hf imports decord.
  "${pip[@]}" -e ".[open_clip,lvlm,api,lmms_eval,ray,test]" decord
else
  "${pip[@]}" -e ".[open_clip,lvlm,api]"
fi

if [ "$mode" = demo ]; then
  exec .venv/bin/attnprompt demo --out attnprompt-demo
fi
exec .venv/bin/python -m pytest "${@:2}"
