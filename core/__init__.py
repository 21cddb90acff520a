"""What every part of the lab shares and none owns: the settings from the environment, and host plumbing.

`servers` (the target side), `loadtests` (the Locust side) and `lab` (the runner and its results) all import from
here; this package imports none of them.
"""
