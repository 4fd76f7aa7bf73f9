"""The GPU check's steps, one module each; bench/gpu_check.py is the command (see its docstring).

Modules: common (run record, subprocess, timing), shapes (inventory and floors), cases (test
inputs and references), probe, build (+ abi_driver.cu), sanitizer, plugin_harness, correctness,
speed, forward_scans, peer, e2e, e2e_modes, report (summary.md), main (command line, step order).
"""
