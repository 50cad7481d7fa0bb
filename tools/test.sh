#!/usr/bin/env bash
# Set up .venv if needed, then run the tests. Extra arguments go to pytest.
#
#   bash tools/test.sh            fast tier: every family and export format on tiny shapes,
#                                 tests marked `slow` deselected (-m "not slow"); the edit-test loop
#   bash tools/test.sh --all      the full suite, slow tier included: what .ci/run runs
#   bash tools/test.sh -k export  either tier with pytest's own options (a later -m wins)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

tier=fast
args=()
own_m=no
for arg in "$@"; do
  if [ "$arg" = --all ]; then tier=full; else args+=("$arg"); fi
  case "$arg" in -m|-m*) own_m=yes ;; esac
done
select=()
[ "$tier" = fast ] && select=(-m "not slow")
# The full tier includes the browser tests: Chromium (apt) and onnxruntime-web (npm).
[ "$tier" = full ] && bash tools/setup_browser.sh

# No path argument: pytest runs pyproject's testpaths (tests/), or the paths given in "$@".
start=$SECONDS
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider ${select[@]+"${select[@]}"} \
  ${args[@]+"${args[@]}"} || status=$?
if [ "$own_m" = yes ]; then
  echo "tools/test.sh: the tests your -m selects ($tier tier otherwise) in $((SECONDS - start)) s, exit $status"
elif [ "$tier" = fast ]; then
  echo "tools/test.sh: fast tier (-m \"not slow\") in $((SECONDS - start)) s, exit $status;" \
    "the full suite is: bash tools/test.sh --all"
else
  echo "tools/test.sh: full suite (--all, slow tier included) in $((SECONDS - start)) s, exit $status"
fi
exit "$status"
