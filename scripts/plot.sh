#!/usr/bin/env bash
# Draws the loss curve of a metrics file (--metrics FILE of tessel-gpt, tessel-example or
# tessel-digits: JSON Lines) to a PNG with gnuplot: the training loss, and the validation loss
# where the file has one, against the step (or the epoch).
#   scripts/plot.sh FILE [OUT.png]      OUT defaults to FILE with .png in place of its suffix
# Needs gnuplot and jq (scripts/setup.sh installs them).
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "$1" = --help ]; then
  echo "usage: scripts/plot.sh METRICS.jsonl [OUT.png]" >&2
  [ "${1:-}" = --help ] && exit 0 || exit 2
fi
metrics=$1
out=${2:-${metrics%.*}.png}
[ -f "$metrics" ] || { echo "plot.sh: no metrics file at '$metrics'" >&2; exit 1; }
for tool in gnuplot jq; do
  command -v $tool > /dev/null || { echo "plot.sh: needs $tool (apt-get install gnuplot-nox jq; scripts/setup.sh installs it)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One "x y" line per object that has the field; a line that is not JSON is an error naming it.
jq -r 'select(.loss != null) | "\(.step // .epoch) \(.loss)"' "$metrics" > "$work/loss" 2> "$work/error" ||
  { echo "plot.sh: $metrics is not JSON Lines: $(head -1 "$work/error")" >&2; exit 1; }
jq -r 'select(.val_loss != null) | "\(.step // .epoch) \(.val_loss)"' "$metrics" > "$work/val"
[ -s "$work/loss" ] || { echo "plot.sh: $metrics has no \"loss\" in any line" >&2; exit 1; }
x=step
jq -e 'select(.step != null)' "$metrics" > /dev/null || x=epoch
curves="'$work/loss' using 1:2 with lines linewidth 2 title 'training loss'"
[ -s "$work/val" ] && curves+=", '$work/val' using 1:2 with linespoints linewidth 2 pointtype 7 title 'validation loss'"
gnuplot <<GNUPLOT
set terminal pngcairo size 900,540 font "sans,11"
set output '$out'
set title "$(basename "$metrics")"
set xlabel "$x"
set ylabel "loss"
set grid
set key top right
plot $curves
GNUPLOT
echo "plot.sh: drew $out ($(wc -l < "$work/loss") training points, $(wc -l < "$work/val") validation points)"
