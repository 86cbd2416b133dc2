"""FastAPI hello of the benchmark: GET / -> {"message": "Hello, world!"} (JSON)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello():
    return {"message": "Hello, world!"}
