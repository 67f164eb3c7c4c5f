"""Ray actors, Ray Train + DeepSpeed launch, campaign state and MLflow tracking."""
