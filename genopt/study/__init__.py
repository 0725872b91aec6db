"""Studies: making and running them, and everything a study keeps.

The rooms, each one concept, in the order they import each other:

- ``storage/``: an Optuna storage from a URL (``database``), heartbeats, and every private Optuna
  name genopt uses (``optuna_private``, pinned and tested).
- ``artifacts/``: where trials keep their files (``stores``: a folder or ``s3://``), the uploads
  (``upload``) and which checkpoints are kept (``retention``).
- ``record/``: the one table of study and trial attributes (``attrs``) and their typed readers
  (``records``), what a study remembers about how it was made (``facts``), whether it may resume
  (``resume``), and the dashboard note (``note``).
- ``search/``: the samplers and pruners a spec names, workers' distinct draws, ``--trials auto``.
- at the top, running trials: ``runner`` (``genopt study``/``genopt worker``), ``optimize`` (Optuna's
  loop, made safe), ``objective``, ``init_from`` (``--init-from``), ``workers``, ``progress``.

Import the module you need; no package here imports anything, so reading a study's artifacts never
loads the runner, its workers or the dashboard.
"""
