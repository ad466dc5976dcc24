"""The smallest Chalice app: proves `chalice deploy` works against the local cloud."""

import os

from chalice import Chalice

app = Chalice(app_name="localcloud-hello")


@app.route("/")
def index() -> dict[str, str]:
    return {"hello": "world", "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"]}
