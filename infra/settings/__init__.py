"""Stack config → typed, validated settings. ALL validation of stack config lives in this package.

`Pulumi.yaml` declares every key (type, description, default); a stack file holds values
only. `load_settings` turns the raw values into frozen models and reports every problem at
once, each with its key path and a command that fixes it, before the program declares a
single resource.

    problems.py   how a problem is reported (one mechanism: `problem(message, fix)`)
    fields.py     field types that check themselves (region, CIDR, instance type, quantities...)
    models.py     the settings models
    artifact.py   the model artifact a stack deploys (modelService.model), checked as the server checks it
    checks.py     checks across keys, each declaring its inputs
    loading.py    raw config → settings, or one StackConfigError
"""

from infra.settings.fields import cpu_cores, memory_bytes
from infra.settings.loading import (
    PROJECT_DIR,
    PROJECT_FILE,
    declared_keys,
    load_settings,
    project_name,
    settings_from_runtime,
)
from infra.settings.models import (
    CanarySettings,
    ModelServiceSettings,
    NodePoolSettings,
    ObservabilitySettings,
    StackSettings,
    SystemPoolSettings,
)
from infra.settings.problems import Problem, StackConfigError, problem

__all__ = [
    "PROJECT_DIR",
    "PROJECT_FILE",
    "CanarySettings",
    "ModelServiceSettings",
    "NodePoolSettings",
    "ObservabilitySettings",
    "Problem",
    "StackConfigError",
    "StackSettings",
    "SystemPoolSettings",
    "cpu_cores",
    "declared_keys",
    "load_settings",
    "memory_bytes",
    "problem",
    "project_name",
    "settings_from_runtime",
]
