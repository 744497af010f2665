#!/usr/bin/python3
"""Keeps the first N nodes of a Checkmate / Moccasin graph (and the links
between them), for small fuzz seeds that still import.

    trim_checkmate.py IN.json OUT.json N
"""
import json
import sys


def main():
    src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(src) as f:
        g = json.load(f)
    nodes = g["nodes"]
    if nodes and "out_cost" in nodes[0]:  # Moccasin: graph.order is the order
        order = g["graph"].get("order", [node["name"] for node in nodes])[:n]
        keep = set(order)
        g["graph"]["order"] = order
        g["graph"].pop("pos", None)
        g["nodes"] = [node for node in nodes if node["name"] in keep]
        g["links"] = [link for link in g["links"] if link["0"] in keep and link["1"] in keep]
    else:  # Checkmate: ids are the order
        keep = {node["id"] for node in nodes if node["id"] < n}
        g["nodes"] = [node for node in nodes if node["id"] in keep]
        g["links"] = [link for link in g["links"] if link["source"] in keep and link["target"] in keep]
    with open(dst, "w") as f:
        json.dump(g, f)


if __name__ == "__main__":
    main()
