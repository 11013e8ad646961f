#!/bin/sh
# The model gate, run inside a built image: app/eval/gate.sh IMAGE [DEPLOYED_REF]
#
# Judges the image's own artifact with the image's libraries and the server's loader, pinned by
# app/model.pkl.sha256 as the Deployment pins it, on the evaluation set in app/eval/. With
# DEPLOYED_REF (deployed/<stack>, the tag CI moves after each deployment) its predictions are
# also compared with those of the artifact deployed there; when that tag does not exist yet (a
# stack's first deploy) the comparison is skipped, and said so. Exit status: the gate's (0
# passed, 1 failed, 2 cannot judge; model_server/gate.py).
set -eu
image=$1
deployed_ref=${2:-}
cd "$(dirname "$0")/../.."

previous=$(mktemp -d)
trap 'rm -rf "$previous"' EXIT
# The image runs as UID 10001, which must be able to read the mounted copy.
chmod 755 "$previous"
set --
if [ -n "$deployed_ref" ]; then
  if git rev-parse --quiet --verify "$deployed_ref^{commit}" >/dev/null; then
    git show "$deployed_ref:app/model.pkl" >"$previous/model.pkl"
    git show "$deployed_ref:app/model.pkl.sha256" >"$previous/model.pkl.sha256"
    chmod 644 "$previous/model.pkl" "$previous/model.pkl.sha256"
    set -- --previous /previous/model.pkl --previous-name "$deployed_ref"
  else
    echo "gate: $deployed_ref does not exist (a first deploy): nothing deployed to compare with"
  fi
fi

docker run --rm --read-only --network none \
  --volume "$PWD/app/eval:/app/eval:ro" --volume "$previous:/previous:ro" \
  --env "MODEL_SHA256=$(cut -d' ' -f1 app/model.pkl.sha256)" \
  --workdir / --entrypoint python "$image" \
  -m model_server.gate --thresholds app/eval/gate.json "$@"
