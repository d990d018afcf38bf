#!/usr/bin/env bash
# Renders the book's figures: DOT written by the project's own examples, drawn by Graphviz
# (`apt-get install graphviz`). The SVG files are committed; run this after changing an
# example a figure comes from.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/book/src/figures
mkdir -p "$out"
cargo run --quiet --release --example tape_tour -- "$out/tape-tour.dot" "$out/sweep-order.dot" > /dev/null
for name in tape-tour sweep-order; do
    dot -Tsvg "$out/$name.dot" -o "$out/$name.svg"
    echo "rendered $out/$name.svg"
done
# Winograd's F(2, 3), drawn from a DOT file written by hand.
dot -Tsvg "$out/winograd-f23.dot" -o "$out/winograd-f23.svg"
echo "rendered $out/winograd-f23.svg"
# The loss and accuracy curves of the main job (the MLP on the embedded digits).
cargo run --quiet --release --example mnist -- --out target/book-figures > /dev/null
cp target/book-figures/mnist-mlp.png "$out/mnist-curves.png"
echo "copied $out/mnist-curves.png"
