"""Deploy-time tooling, apart from the program: the smoke test CI runs against a stack's endpoint."""
