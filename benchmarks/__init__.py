"""Load benchmarks: real WebRTC clients against a running server, with baselines in the same run."""
