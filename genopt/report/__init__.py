"""What a person looks at: the offline HTML report with its figures, and optuna-dashboard.

Import the module you need: ``genopt.report.figures`` writes reports, ``genopt.report.dashboard``
serves the dashboard.
"""
