"""`phivault bench`: the performance harness (servers under test, load generator,
workloads, report). Nothing here is imported by `serve` or the API; the one app that runs
with safeguards off (unguarded_app.py) exists for the comparison and serves only data
directories created with encryption off."""
