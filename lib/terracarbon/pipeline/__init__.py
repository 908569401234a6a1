"""The study pipeline: parameters, stage specs and manifests, the runner, reports, compute."""
