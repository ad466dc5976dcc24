"""serverless-scaling's LocalStack extension: AWS behaviour LocalStack's open edition lacks on a
machine without Docker (Lambda functions as OS processes). It knows nothing of any application."""
