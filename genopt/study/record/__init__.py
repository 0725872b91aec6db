"""What a study and its trials record: the attribute table (``attrs``), typed readers (``records``),
how the study was made (``facts``), whether it may resume (``resume``), the dashboard note (``note``)."""
