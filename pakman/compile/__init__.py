"""The model -> the step graph: pipelines as data, settings and options, the project a build prepares."""
