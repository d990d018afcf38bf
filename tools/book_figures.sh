#!/usr/bin/env bash
# Renders the book's figures: DOT written by the project's own examples, drawn by Graphviz
# (`apt-get install graphviz`). The SVG files are committed; run this after changing an
# example a figure comes from.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/book/src/figures
mkdir -p "$out"
cargo run --quiet --release --example tape_tour -- "$out/tape-tour.dot" > /dev/null
dot -Tsvg "$out/tape-tour.dot" -o "$out/tape-tour.svg"
echo "rendered $out/tape-tour.svg"
