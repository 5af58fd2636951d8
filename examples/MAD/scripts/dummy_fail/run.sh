#!/bin/bash
# Example model "dummy_fail" (tag "failing"): always fails, to show how a failed run is reported.
echo "dummy_fail: this model fails on purpose" >&2
exit 1
