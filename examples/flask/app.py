"""A small Flask app served by Caddy (see README.md in this folder).

GET  /           a page with a form
POST /           the form's answer
GET  /api/info   JSON about the request
"""

from flask import Flask, jsonify, render_template, request

app = Flask(__name__)


@app.get("/")
def index():
    return render_template("index.html", name=None)


@app.post("/")
def greet():
    # Jinja escapes the name: the form is not a way to inject HTML.
    name = request.form.get("name", "").strip() or "stranger"
    return render_template("index.html", name=name)


@app.get("/api/info")
def info():
    return jsonify(
        framework="flask",
        method=request.method,
        path=request.path,
        http_version=request.environ.get("SERVER_PROTOCOL"),
        client=request.remote_addr,
    )
