"""Ray actors and the trainer group, Ray Train + DeepSpeed launch, campaign state and MLflow tracking."""
