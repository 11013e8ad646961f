"""The Pulumi program's building blocks: settings, then one component per file."""
