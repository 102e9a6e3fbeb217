"""The KATA connector: submits admitted messages to the Central Node, polls verdicts in batches,
and owns the connection lifecycle and the sensor's key pair."""
