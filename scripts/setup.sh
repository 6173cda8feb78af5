#!/usr/bin/env bash
# Set up .venv at the repository root and run the main job or the whole test suite.
#
#   bash scripts/setup.sh demo   # install, then run the offline demo (HTML report in attnprompt-demo/)
#   bash scripts/setup.sh test   # install with every extra, then type-check src/ and run the whole test suite
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
# pip's and apt's output goes to a log; a person sees one line per step, and the log's end on failure.
log=.venv/setup.log
: >"$log"
step() { echo "setup: $1"; }
quietly() {
  if ! "$@" >>"$log" 2>&1; then
    echo "setup: failed: $*" >&2
    tail -n 25 "$log" >&2
    echo "setup: the whole log is $log" >&2
    exit 1
  fi
}
step "installing into .venv (details in $log)"
pip=(.venv/bin/python -m pip install --disable-pip-version-check --no-input)
# An old pip does not normalise extra names (open_clip vs open-clip, PEP 685) and would skip the
# open_clip extra without an error.
quietly "${pip[@]}" "pip>=24.1"

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
  step "installing $spec"
  # shellcheck disable=SC2086
  quietly "${pip[@]}" $spec
fi
if [ "$mode" = test ]; then
  step "installing attnprompt with every extra"
  # lmms-eval too, so the plugin is tested against the real registry; its llava_hf imports decord.
  quietly "${pip[@]}" -e ".[open_clip,lvlm,api,app,lmms_eval,ray,test]" decord
  # The browser tests drive Debian's chromium through Playwright (Playwright's own browser
  # download is not used).
  if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo -n)
    if command -v apt-get >/dev/null 2>&1; then
      step "installing chromium (apt) for the browser tests"
      quietly "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      quietly "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
      echo "setup: no chromium and no apt-get: the browser tests will be skipped (or fail under CI)" >&2
    fi
  fi
else
  step "installing attnprompt"
  quietly "${pip[@]}" -e ".[open_clip,lvlm,api,app]"
fi

if [ "$mode" = demo ]; then
  step "running the offline demo"
  exec .venv/bin/attnprompt demo --out attnprompt-demo
fi
step "type-checking src/ (configuration in pyproject.toml)"
.venv/bin/python -m mypy
step "running the tests"
exec .venv/bin/python -m pytest "${@:2}"
