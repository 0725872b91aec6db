"""Ensembles of a study's best generators: build (choose and score), mixture math, export, sample.

Import the module you need; ``genopt.load_ensemble`` is the one-line way to load an export.
"""
