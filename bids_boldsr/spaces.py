"""Output spaces: parsed once from ``--output-spaces`` into typed references, resolved to files once.

After niworkflows' ``utils/spaces.py`` (``Reference``/``SpatialReferences``), much smaller:

- ``bold``: the native super-resolved grid of each run (controls the native ``desc-sr_bold``);
- ``T1w``: the participant's T1w field of view at the super-resolved voxel size;
- a TemplateFlow template, optionally ``:cohort-X`` and ``:res-N``
  (``MNI152NLin6Asym:res-2``, ``MNIPediatricAsym:cohort-2:res-1``).

Every template gets its own normalisation (``Normalisation``): the T1w, or the BOLD reference when
there is no T1w, is registered to that template's own image and brain mask. The embedded template is
always registered too, as the internal reference of the cerebellar atlas (``Anchor``), but its
outputs are written only when it is requested.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import templates as tpl
from .errors import InputMissing, UsageError

NATIVE, ANAT = "bold", "T1w"
DEFAULT = ("bold", tpl.EMBEDDED)
_MODIFIER = re.compile(r"(cohort|res)-([A-Za-z0-9]+)")


@dataclass(frozen=True)
class Reference:
    """One output space. ``name`` is ``bold``, ``T1w`` or a TemplateFlow template identifier."""

    name: str
    res: int | None = None
    cohort: str | None = None

    @property
    def is_template(self) -> bool:
        return self.name not in (NATIVE, ANAT)

    @property
    def template_key(self) -> str:
        """What one normalisation serves: the template and cohort (any ``res`` shares it)."""
        return self.name + (f"_cohort-{self.cohort}" if self.cohort else "")

    @property
    def label(self) -> str:
        """The file-name fragment after ``space-`` (and the QC key suffix)."""
        return self.template_key + (f"_res-{self.res}" if self.res is not None else "")

    @property
    def entities(self) -> dict:
        return {"space": self.name, "cohort": self.cohort, "res": self.res}

    def __str__(self) -> str:
        mods = [f"cohort-{self.cohort}"] * bool(self.cohort) + [f"res-{self.res}"] * (self.res is not None)
        return ":".join([self.name, *mods])


def parse_reference(text: str) -> Reference:
    """``NAME[:cohort-X][:res-N]``; raises ``UsageError`` (exit 64) with one line."""
    name, *mods = text.strip().split(":")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name):
        raise UsageError(f"invalid output space {text!r}: expected bold, T1w or a TemplateFlow "
                         "name with optional :cohort-X and :res-N")
    found = {}
    for mod in mods:
        m = _MODIFIER.fullmatch(mod)
        if not m or m.group(1) in found:
            raise UsageError(f"invalid modifier {mod!r} in output space {text!r}: use "
                             "cohort-<label> and/or res-<integer>, once each")
        found[m.group(1)] = m.group(2)
    if found and name in (NATIVE, ANAT):
        raise UsageError(f"output space {name!r} takes no modifiers (got {text!r}); its voxel size "
                         "is the super-resolved one")
    res = found.get("res")
    if res is not None and not res.isdigit():
        raise UsageError(f"invalid res-{res} in output space {text!r}: res takes a TemplateFlow "
                         "resolution index (an integer, e.g. res-2)")
    return Reference(name, int(res) if res is not None else None, found.get("cohort"))


@dataclass(frozen=True)
class SpatialReferences:
    """The requested output spaces, in the order given, without repeats."""

    references: tuple[Reference, ...]

    @classmethod
    def parse(cls, texts=DEFAULT) -> "SpatialReferences":
        refs = tuple(dict.fromkeys(parse_reference(t) for t in texts))
        out = cls(refs)
        if not out.native and not out.templates:
            raise UsageError(f"--output-spaces {' '.join(map(str, refs))}: request 'bold' and/or a "
                             f"template (e.g. {tpl.EMBEDDED}) besides T1w")
        return out

    @property
    def native(self) -> bool:
        return any(r.name == NATIVE for r in self.references)

    @property
    def anat(self) -> bool:
        return any(r.name == ANAT for r in self.references)

    @property
    def templates(self) -> tuple[Reference, ...]:
        return tuple(r for r in self.references if r.is_template)

    def strings(self) -> list[str]:
        return [str(r) for r in self.references]


@dataclass(frozen=True)
class Target:
    """A template image and brain mask that the T1w (or BOLD reference) is registered to."""

    key: str  # Reference.template_key: node names, transform file names
    name: str
    cohort: str | None
    t1w: Path
    mask: Path

    @property
    def entities(self) -> dict:
        return {"cohort": self.cohort}


@dataclass(frozen=True)
class TemplateSpace:
    """One requested template space: its output-grid files and the normalisation it comes from."""

    reference: Reference
    t1w: Path  # defines the output grid (the res-N image, or the registration image)
    mask: Path
    target: Target


@dataclass(frozen=True)
class Anchor:
    """The embedded template as the internal reference of the cerebellar atlas."""

    target: Target
    atlas: Path
    atlas_tsv: Path
    atlas_name: str = "AAL (cerebellar regions)"
    suit: dict | None = None


@dataclass(frozen=True)
class ResolvedSpaces:
    references: SpatialReferences
    templates: tuple[TemplateSpace, ...]
    targets: tuple[Target, ...]  # every normalisation to run: requested templates and the anchor
    anchor: Anchor

    @property
    def native(self) -> bool:
        return self.references.native

    @property
    def anat(self) -> bool:
        return self.references.anat


def _image_and_mask(name, cohort, res, cache):
    """A template's T1w image and brain mask at resolution ``res`` (None: the only one there is)."""
    query = {"cohort": cohort} if cohort else {}
    return (tpl.get_template_file(name, cache, resolution=res, suffix="T1w", **query),
            tpl.get_template_file(name, cache, resolution=res, desc="brain", suffix="mask", **query))


def _registration_files(name, cohort, cache, sloppy):
    """A template's image and mask for registration: the 1 mm (sloppy: 2 mm) files when
    TemplateFlow has them, else the other of the two, else the only resolution there is."""
    first = None
    for res in ((2, 1) if sloppy else (1, 2)) + (None,):
        try:
            return _image_and_mask(name, cohort, res, cache)
        except tpl.TemplateError as exc:
            first = first or exc
    raise first


def resolve(references: SpatialReferences, cache, sloppy=False, cerebellar_atlas="AAL") -> ResolvedSpaces:
    """Files for every space and normalisation; a template missing offline is exit 66 naming
    ``TEMPLATEFLOW_HOME`` (``templates.get_template_file``)."""
    try:
        targets = {}
        for ref in (Reference(tpl.EMBEDDED),) + references.templates:
            if ref.template_key not in targets:
                t1w, mask = _registration_files(ref.name, ref.cohort, cache, sloppy)
                targets[ref.template_key] = Target(ref.template_key, ref.name, ref.cohort, t1w, mask)
        spaces = []
        for ref in references.templates:
            target = targets[ref.template_key]
            t1w, mask = target.t1w, target.mask
            if ref.res is not None:
                t1w, mask = _image_and_mask(ref.name, ref.cohort, ref.res, cache)
            spaces.append(TemplateSpace(ref, t1w, mask, target))
        anchor = _anchor(targets[tpl.EMBEDDED], cache, sloppy, cerebellar_atlas)
    except tpl.TemplateError as exc:
        raise InputMissing(str(exc)) from None
    return ResolvedSpaces(references, tuple(spaces), tuple(targets.values()), anchor)


def _anchor(target, cache, sloppy, cerebellar_atlas) -> Anchor:
    atlas = tpl.get_template_file(tpl.EMBEDDED, cache, resolution=2 if sloppy else 1, atlas="AAL",
                                  desc="cerebellum", suffix="dseg")
    if cerebellar_atlas != "SUIT":
        return Anchor(target, atlas, atlas.parent / f"tpl-{tpl.EMBEDDED}_atlas-AAL_desc-cerebellum_dseg.tsv")
    suit = tpl.suit_files(cache)
    return Anchor(target, atlas, suit["tsv"], suit=suit,
                  atlas_name=("SUIT atlas-Diedrichsen2009 (TemplateFlow tpl-SUIT, registered to "
                              f"{tpl.EMBEDDED} by a cerebellum-masked affine + SVF)"))
