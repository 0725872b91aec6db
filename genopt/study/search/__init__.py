"""How a study searches: samplers (``samplers``), pruners (``pruners``), workers' distinct draws
(``distinct``), and when ``--trials auto`` stops (``stopping``)."""
