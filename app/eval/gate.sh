#!/bin/sh
# The model gate, run inside a built image: app/eval/gate.sh IMAGE [DEPLOYED_REF]
#
# Judges the image's own artifact, MODEL_FILE (relative to app/, default model.pkl: the image's
# build argument, the stack's modelService.model), with the image's libraries and the server's
# loader, pinned by app/<MODEL_FILE>.sha256 as the pod pins it, on the thresholds beside it: the
# gate.json in the artifact's directory (app/examples/<kind>/gate.json), or app/eval/gate.json for
# the bundled model.pkl. With DEPLOYED_REF (deployed/<stack>, the tag CI moves after each
# deployment) its predictions are also compared with those of the artifact deployed there,
# DEPLOYED_MODEL_FILE (default MODEL_FILE); when that tag does not exist yet (a stack's first
# deploy) the comparison is skipped, and said so. `make gate` and the deploy workflow take both
# from the stack (python -m delivery.stack_model). Exit status: the gate's (0 passed, 1 failed,
# 2 cannot judge; model_server/gate.py).
set -eu
image=$1
deployed_ref=${2:-}
model=${MODEL_FILE:-model.pkl}
deployed_model=${DEPLOYED_MODEL_FILE:-$model}
cd "$(dirname "$0")/../.."

if [ "$model" = model.pkl ]; then
  thresholds=eval/gate.json
else
  thresholds=$(dirname "$model")/gate.json
fi
if [ ! -f "app/$thresholds" ]; then
  echo "gate cannot judge app/$model: no thresholds file app/$thresholds beside it (write one: app/eval/README.md)" >&2
  exit 2
fi
# app/eval/ (the evaluation set, the default thresholds) is mounted whole; another thresholds file
# alone, at its own path, so that its eval_set resolves as it does in the checkout.
extra_thresholds=
case $thresholds in
  eval/*) ;;
  *) extra_thresholds="$PWD/app/$thresholds:/app/$thresholds:ro" ;;
esac

previous=$(mktemp -d)
trap 'rm -rf "$previous"' EXIT
# The image runs as UID 10001, which must be able to read the mounted copy.
chmod 755 "$previous"
set --
if [ -n "$deployed_ref" ]; then
  if git rev-parse --quiet --verify "$deployed_ref^{commit}" >/dev/null; then
    name=$(basename "$deployed_model")
    git show "$deployed_ref:app/$deployed_model" >"$previous/$name"
    git show "$deployed_ref:app/$deployed_model.sha256" >"$previous/$name.sha256"
    chmod 644 "$previous/$name" "$previous/$name.sha256"
    set -- --previous "/previous/$name" --previous-name "$deployed_ref"
  else
    echo "gate: $deployed_ref does not exist (a first deploy): nothing deployed to compare with"
  fi
fi

docker run --rm --read-only --network none \
  --volume "$PWD/app/eval:/app/eval:ro" ${extra_thresholds:+--volume "$extra_thresholds"} \
  --volume "$previous:/previous:ro" \
  --env "MODEL_SHA256=$(cut -d' ' -f1 "app/$model.sha256")" \
  --workdir / --entrypoint python "$image" \
  -m model_server.gate --thresholds "app/$thresholds" "$@"
