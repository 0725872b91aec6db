"""A trial's files: the store they live in (``stores``), their upload (``upload``), and which
checkpoints the study keeps (``retention``)."""
