"""The `atelier` command line: one program that drives every area (data, training, export,
worker, gateway, the embedded stack, and the gateway through the SDK).

It sits above every other package and may import any of them; nothing imports it back
(docs/ARCHITECTURE.md, "Contracts: layers"). `python -m atelier_cli` is the `atelier` program.
"""
