"""The embedded demo: MMRL and MMRL++ on a synthetic image–text world, on a CPU, with no downloads.

``bash demo.sh`` renders the world, pretrains (or loads) a tiny CLIP, writes a shifted target
dataset in the CoOp layout, runs the real train.py base-to-novel protocol and prints the table.
"""
