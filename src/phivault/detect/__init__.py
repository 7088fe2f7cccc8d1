"""Threat detection on the audit stream: detectors (plug-ins), the engine that feeds them
the log in order, the alerts they raise, their review workflow and where alerts are sent.
See docs/DETECTION.md."""
