"""Bar chart of a bench/run.py result: median req/s per configuration and server.

    bench/.venv/bin/python bench/chart.py bench/results/latest.json bench/results/latest.png

Needs matplotlib (in bench/.venv); bench/run.py calls it after a run. One panel
per placement, one group of bars per configuration, one colour per server; a
server that failed a configuration gets a red "FAIL" instead of a bar.
"""

import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

COLOURS = {
    "module": "#1b7837",
    "respond": "#9e9e9e",
    "granian": "#2166ac",
    "uvicorn": "#b2182b",
    "gunicorn": "#e08214",
    "gunicorn-16t": "#b35806",
    "caddy+granian": "#92c5de",
    "caddy+uvicorn": "#f4a582",
    "caddy+gunicorn": "#fdb863",
    "interpreters=1": "#a6dba0",
    "interpreters=2": "#1b7837",
}
PLACEMENT = {
    "1": "--cores 1: server pinned to CPU 0, wrk to CPU 1",
    "0": "unpinned: server and wrk share both CPUs",
}


def short(n):
    if n >= 10000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{n:.0f}"


def main(src, dst):
    result = json.load(open(src))
    placements = result["settings"]["placements"]
    configs = result["configs"]
    summary = {(s["placement"], s["config"], s["server"]): s for s in result["summary"]}
    servers_seen = []
    for c in configs:
        for s in c["servers"]:
            if s not in servers_seen:
                servers_seen.append(s)

    nbars = sum(len(c["servers"]) for c in configs)
    width = min(18.0, max(7.0, 0.3 * nbars + 2.5))
    values = [s["rps_median"] for s in result["summary"] if s["ok"] and s["rps_median"]]
    bottom = 10 ** math.floor(math.log10(min(values) / 2)) if values else 1.0
    fig, axes = plt.subplots(len(placements), 1, figsize=(width, 4.6 * len(placements)),
                             squeeze=False)
    for ax, placement in zip(axes[:, 0], placements):
        x = 0.0
        ticks, labels = [], []
        top = bottom * 10
        for c in configs:
            if c.get("placement", placement) != placement:
                continue  # the processes suite runs each configuration in one placement
            n = len(c["servers"])
            start = x
            for server in c["servers"]:
                s = summary.get((placement, c["name"], server))
                if s and s["ok"] and s["rps_median"]:
                    v = s["rps_median"]
                    top = max(top, v)
                    ax.bar(x, v, width=0.9, color=COLOURS.get(server, "#666666"),
                           edgecolor="black", linewidth=0.4)
                    ax.text(x, v * 1.05, short(v), ha="center", va="bottom",
                            fontsize=6.5, rotation=90)
                else:
                    ax.text(x, bottom * 1.3, "FAIL", ha="center", va="bottom", color="red",
                            fontsize=7, rotation=90, fontweight="bold")
                x += 1
            ticks.append(start + (n - 1) / 2)
            labels.append(f"{c['name']}\n{c['connections']} conn")
            x += 0.8
        ax.set_yscale("log")
        ax.set_ylim(bottom, top * 4)
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("req/s, median (log scale)")
        ax.set_title(PLACEMENT.get(placement, placement), fontsize=10)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.set_axisbelow(True)
    v = result.get("versions", {})
    m = result.get("machine", {})
    st = result["settings"]
    fig.suptitle(
        f"caddysnake bench ({result['suite']} suite) {result['started'][:10]}: "
        f"{st['rounds']} round(s) x {st['duration_s']:g}s, median req/s\n"
        f"Python {v.get('python', '?')}, {m.get('cpu_model', '?')} x{m.get('cpus', '?')}",
        fontsize=10)
    handles = [Patch(facecolor=COLOURS.get(s, "#666666"), edgecolor="black", label=s)
               for s in servers_seen]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: chart.py RESULT.json OUT.png")
    main(sys.argv[1], sys.argv[2])
