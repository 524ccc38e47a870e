"""``python -m nfk plot KIND DATA OUT``: figures from data files (see nfk.plot.main)."""
import sys

from . import plot

if len(sys.argv) < 2 or sys.argv[1] != "plot":
    print("usage: python -m nfk plot {spectrum,class-distances,image-grid,monitor} DATA OUT",
          file=sys.stderr)
    raise SystemExit(2)
raise SystemExit(plot.main(sys.argv[2:]))
