"""Domain logic, adapters and settings of the serverless-scaling app (no LocalStack knowledge)."""
