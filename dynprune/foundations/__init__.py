"""What every layer stands on and which knows nothing of pruning: atomic files, locks, safetensors with
metadata, bit-packed masks, strict JSON and CSV."""
