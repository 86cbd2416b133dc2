"""Flask hello of the benchmark: GET / -> {"message": "Hello, world!"} (JSON)."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return {"message": "Hello, world!"}
