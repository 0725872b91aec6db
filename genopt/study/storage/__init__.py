"""The Optuna storage: a storage URL opened (``database``), heartbeats for the journal (``heartbeat``),
and Optuna's private names (``optuna_private``)."""
