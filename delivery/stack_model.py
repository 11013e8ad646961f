"""What a stack deploys, for the shell steps that build and gate its image before `pulumi up`:

    python -m delivery.stack_model dev model         # examples/xgboost/model.ubj (under app/)
    python -m delivery.stack_model dev dockerfile    # Dockerfile, or Dockerfile.cuda on a GPU pool
    python -m delivery.stack_model dev model --ref deployed/dev

The first two validate the stack's whole config, as the program does (exit 2 with every problem).
With --ref, the artifact the stack file at that commit named: what was deployed there, read as
written (a commit from before modelService.model, or one without the stack file, deployed the
default), since that commit's config answered to that commit's program.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import yaml

from infra.settings import PROJECT_DIR, StackConfigError, load_settings, project_name
from infra.settings.artifact import DEFAULT_MODEL
from infra.workload.image import DOCKERFILES
from review.stack_files import stack_config


def deployed_model(stack: str, ref: str) -> str:
    shown = subprocess.run(["git", "show", f"{ref}:Pulumi.{stack}.yaml"], cwd=PROJECT_DIR, capture_output=True,
                           text=True, check=False)
    if shown.returncode != 0:
        return DEFAULT_MODEL
    config = (yaml.safe_load(shown.stdout) or {}).get("config") or {}
    model_service = config.get(f"{project_name()}:modelService") or {}
    if isinstance(model_service, str):  # as `pulumi config set` may write a structured value
        model_service = json.loads(model_service)
    return str(model_service.get("model", DEFAULT_MODEL))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack", help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument("what", choices=("model", "dockerfile"))
    parser.add_argument("--ref", help="with `model`: the artifact the stack file at this commit named")
    options = parser.parse_args(argv)
    if options.ref is not None:
        if options.what != "model":
            parser.error("--ref goes with `model` only")
        print(deployed_model(options.stack, options.ref))
        return 0
    try:
        raw, _ = stack_config(options.stack)
        settings = load_settings(raw, project=project_name(), stack=options.stack)
    except (StackConfigError, FileNotFoundError) as error:
        print(error, file=sys.stderr)
        return 2
    print(settings.model_artifact.file if options.what == "model" else DOCKERFILES[settings.model_device])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
