"""Data: artifact I/O with CF attributes (``io``), the target grid (``grid``), data prep
(``prep``), survey (field) plots (``survey``), where a study's inputs come from (``inputs``)
and the built-in synthetic study (``synthetic``)."""
