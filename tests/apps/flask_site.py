from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/json")
def json_route():
    return jsonify(framework="flask", args=request.args.to_dict())


@app.post("/form")
def form_route():
    return jsonify(name=request.form.get("name"), n=len(request.form))


@app.post("/jsonpost")
def jsonpost_route():
    data = request.get_json()
    return jsonify(got=data, len=len(request.get_data()))
