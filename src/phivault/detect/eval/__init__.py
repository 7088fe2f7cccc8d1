"""`phivault alerts eval`: a simulated clinic driven through the real server and the real
detectors, with injected attacks, scored for recall, precision, false alerts and latency."""
