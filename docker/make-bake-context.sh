#!/usr/bin/env bash
# Make a scratch Docker build context: the repository's files (tracked + untracked, minus
# what .gitignore ignores) plus a model directory and a GLUE task directory under
# docker/bake/, for an offline build (--build-arg MODEL=/opt/bake/model DATA_DIR=/opt/bake/<TASK>).
#
#   docker/make-bake-context.sh DEST MODEL_DIR [GLUE_TASK_DIR]
#
# Nothing is written inside the repository. No .git folder is copied, nested ones included (a clone
# of a model or of another repository can hold a token in its remote URL).
set -euo pipefail
dest=${1:?usage: $0 DEST MODEL_DIR [GLUE_TASK_DIR]}
model=${2:?usage: $0 DEST MODEL_DIR [GLUE_TASK_DIR]}
data=${3:-}
repo=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$dest"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) \
  | (cd "$repo" && while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done) \
  | (cd "$repo" && tar --null --exclude=.git -T - -cf -) | tar -C "$dest" -xf -

mkdir -p "$dest/docker/bake/model"
# Model files only: weights, config, tokenizer (skip READMEs and sentence-transformers extras).
for f in "$model"/*; do
  [[ -f $f ]] || continue
  case $(basename "$f") in
    *.safetensors|*.bin|config.json|generation_config.json|tokenizer*.json|vocab.txt|merges.txt|\
    special_tokens_map.json|added_tokens.json|spiece.model|sentencepiece.bpe.model|vocab.json)
      cp "$f" "$dest/docker/bake/model/" ;;
  esac
done
if [[ -n $data ]]; then
  task=$(basename "$data")
  mkdir -p "$dest/docker/bake/$task"
  cp "$data"/*.tsv "$dest/docker/bake/$task/"
fi
chmod -R a+rX "$dest/docker/bake"
echo "$dest"
