"""Tools, not library: `make bench` (speed and size as ratios) and `make gpu-check` (a new GPU machine, tested and
timed). They use every layer; no layer uses them."""
