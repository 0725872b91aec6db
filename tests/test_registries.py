"""The names a spec accepts are the names the registries build, and every registered thing builds.

The spec layer imports neither torch nor Optuna, so it validates names against lists of its own
(genopt.spec.fields); these tests keep those lists and the registries in step.
"""

from __future__ import annotations

import dataclasses
import warnings

import optuna
import pytest
import torch

from genopt import models
from genopt.errors import GenoptError
from genopt.spec import StudySpec, fields
from genopt.study.search import pruners, samplers
from genopt.study.search.pruners import make_pruner
from genopt.study.search.samplers import make_sampler


def disagreements() -> list[str]:
    """Each spec field whose accepted names differ from its registry's keys, with the difference."""
    registries = {
        "kind": models.ARCHITECTURES,
        "conditioning": models.CONDITIONINGS,
        "sampler": samplers.SAMPLERS,
        "pruner": pruners.PRUNERS,
    }
    found = []
    for name, registry in registries.items():
        accepted = set(fields.FIELD[name].choices)
        if accepted != set(registry):
            found.append(f"{name}: spec only {sorted(accepted - set(registry))}, registry only "
                         f"{sorted(set(registry) - accepted)}")  # fmt: skip
    return found


def test_the_spec_accepts_exactly_the_registered_names():
    assert disagreements() == []


def test_a_name_added_to_one_side_only_is_caught(monkeypatch):
    monkeypatch.setitem(samplers.SAMPLERS, "cmaes", samplers.random)
    assert disagreements() == ["sampler: spec only [], registry only ['cmaes']"]
    monkeypatch.delitem(samplers.SAMPLERS, "cmaes")
    kind = fields.FIELD["kind"]
    monkeypatch.setitem(fields.FIELD, "kind", dataclasses.replace(kind, choices=(*kind.choices, "resnet")))
    assert disagreements() == ["kind: spec only ['resnet'], registry only []"]


@pytest.mark.parametrize("sampler", fields.SAMPLER_NAMES)
@pytest.mark.parametrize("pruner", fields.PRUNER_NAMES)
def test_every_search_a_spec_names_builds(sampler, pruner):
    spec = StudySpec(sampler=sampler, pruner=pruner, min_resource=2, max_epochs=6)
    spec.validate("spec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(make_sampler(spec, distinct=True), optuna.samplers.BaseSampler)
        assert isinstance(make_pruner(spec), optuna.pruners.BasePruner)


@pytest.mark.parametrize("kind", fields.ARCHITECTURE_NAMES)
@pytest.mark.parametrize("conditioning", [None, *fields.CONDITIONING_NAMES])
def test_every_network_a_spec_names_builds_and_runs(kind, conditioning):
    model = "gan" if conditioning is None else "cgan"
    spec = StudySpec(model=model, kind=kind, conditioning=conditioning or "concat")
    spec.validate("spec")
    num_classes = 0 if conditioning is None else 10
    widths = getattr(spec, models.ARCHITECTURES[kind].generator_widths)[:1]
    G = models.Generator(models.GeneratorConfig(8, widths, (1, 8, 8), num_classes, kind))
    D = models.Discriminator(
        models.DiscriminatorConfig((4,), (1, 8, 8), num_classes, conditioning=spec.conditioning, kind=kind)
    )
    labels = torch.arange(3)
    images = G.sample(labels)
    logits, classes = D.forward_with_classes(images, labels if num_classes else None)
    assert images.shape == (3, 1, 8, 8) and logits.shape == (3,)
    assert (classes is not None) == (conditioning == "acgan")
    assert D.conditioning == (conditioning or "none")


def test_an_unregistered_name_is_refused_in_one_line():
    for name in ("kind", "conditioning", "sampler", "pruner"):
        with pytest.raises(GenoptError, match=rf"^spec: unknown {name} 'nope': choose one of "):
            dataclasses.replace(StudySpec(), **{name: "nope"}).validate("spec")
    with pytest.raises(ValueError, match="unknown kind 'nope'"):
        models.Generator(models.GeneratorConfig(8, (4,), (1, 8, 8), kind="nope"))
