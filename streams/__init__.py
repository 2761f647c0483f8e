"""Stream processing: the faust app and agent, the pipeline, the sink, the CLI, and the
pure domain core (``streams.core``)."""
