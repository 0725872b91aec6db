"""Studies: the objective and search, the storage, what trials leave behind, workers and progress.

Import the module you need (``genopt.study.runner`` runs studies); this package imports nothing, so
reading a study's artifacts never loads the runner, its workers or the dashboard.
"""
