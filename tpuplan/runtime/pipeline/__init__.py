"""Running segments as a pipeline: stages, routing, the runners."""
