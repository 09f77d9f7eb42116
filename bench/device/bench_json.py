"""Reading the JSON files the device benchmarks leave behind (summarize*.py share it).

A benchmark that crashed, timed out or was skipped leaves its file missing or cut short; the
summaries then show "-" cells for it instead of failing, so such a file reads as None.
"""
import json


def load_json(path):
    """The JSON document in the file at `path`; None if it is missing, unreadable or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
