"""Study specifications: a TOML file, validated field by field, as plain frozen dataclasses.

This layer imports neither torch nor Optuna. ``fields`` is the one table of fields (section, type,
default, the article's default, searchable, range); ``config`` builds ``RunConfig`` and ``StudySpec``
from it and validates them; ``toml`` reads spec files; ``values`` parses and formats command-line values.
"""

from __future__ import annotations

from genopt.spec.config import DEFAULT_PARAMS, Param, RunConfig, StudySpec
from genopt.spec.fields import (
    ARCHITECTURE_NAMES,
    ARTICLE_BEHAVIOUR,
    AUGMENTS,
    CONDITIONING_NAMES,
    FIELDS,
    MODELS,
    OBJECTIVES,
    PRECISIONS,
    PRUNER_NAMES,
    SAMPLER_NAMES,
    SEARCHABLE,
    SELECT_EPOCHS,
    Field,
    Range,
    is_number,
)
from genopt.spec.toml import find_spec, load_spec, spec_from_dict
from genopt.spec.values import format_params, parse_value

__all__ = [
    "ARCHITECTURE_NAMES",
    "ARTICLE_BEHAVIOUR",
    "AUGMENTS",
    "CONDITIONING_NAMES",
    "DEFAULT_PARAMS",
    "FIELDS",
    "MODELS",
    "OBJECTIVES",
    "PRECISIONS",
    "PRUNER_NAMES",
    "SAMPLER_NAMES",
    "SEARCHABLE",
    "SELECT_EPOCHS",
    "Field",
    "Param",
    "Range",
    "RunConfig",
    "StudySpec",
    "find_spec",
    "format_params",
    "is_number",
    "load_spec",
    "parse_value",
    "spec_from_dict",
]
