"""Fit stage of a run: BOLD reference and mask, head motion, the super-resolution node, and the
coregistration that links the run to the T1w (rigid) or, without a T1w, to each template (affine).
Nothing here resamples the series into an output space (``apply.py`` does, once)."""
from __future__ import annotations

from dataclasses import dataclass, field

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ...interfaces.bold import BoldReference, HeadMotion
from ...interfaces.registration import RegisterLinear
from ...interfaces.sr import SuperResolve, SuperResolveReference
from ..names import node_safe

COREG_STARTS = 13  # BOLD -> T1w multi-start (registration.linear.start_offsets)


@dataclass
class Fit:
    boldref: pe.Node
    hmc: pe.Node
    sr: pe.Node
    sr_ref: pe.Node
    # per normalisation target key: ((node, field) pull chain target -> boldref, (node, field) inverse)
    chains: dict = field(default_factory=dict)
    # pull chain T1w -> boldref (the coregistration alone), when there is a T1w
    t1w_chain: tuple | None = None
    # linear registration nodes whose transforms are outputs: [(node, to-space, entities)]
    coregistrations: list = field(default_factory=list)


def t1w_input_fields(spaces) -> list[str]:
    """Input fields a run needs from the anatomical stage, per normalisation target."""
    return [f for t in spaces.targets for f in (f"t1w_to_{node_safe(t.key)}_xfm",
                                                  f"{node_safe(t.key)}_to_t1w_xfm")]


def init_fit(wf, config, run, spaces, device, has_t1w, inputnode) -> Fit:
    bold = str(run.path)
    boldref = pe.Node(BoldReference(bold_file=bold), name="boldref", mem_gb=1.0)
    hmc = pe.Node(HeadMotion(bold_file=bold, device=device, sloppy=config.sloppy,
                             seed=config.random_seed), name="hmc", mem_gb=2.0, n_procs=config.omp_nthreads)
    sr = pe.Node(SuperResolve(bold_file=bold, method=config.sr_method, **config.sr_grid, device=device,
                              precision=config.sr_precision, use_gpu=device == "cuda"),
                 name="super_resolve", mem_gb=2.0, n_procs=config.omp_nthreads)
    # coregistration on the super-resolved reference: sharper edges halve the error of an
    # interpolated one (bids-boldsr-bench register-sr)
    sr_ref = pe.Node(SuperResolveReference(method=config.sr_method, **config.sr_grid, device=device,
                                           precision=config.sr_precision),
                     name="sr_boldref", mem_gb=1.0, n_procs=config.omp_nthreads)
    wf.connect([(boldref, hmc, [("ref_file", "ref_file"), ("mask_file", "mask_file")]),
                (inputnode, sr, [("checkpoint", "checkpoint")]),
                (boldref, sr_ref, [("ref_file", "bold_file")]),
                (inputnode, sr_ref, [("checkpoint", "checkpoint")])])
    fit = Fit(boldref, hmc, sr, sr_ref)
    if has_t1w:
        _via_t1w(wf, config, spaces, device, inputnode, fit)
    else:
        _to_templates(wf, config, spaces, device, fit)
    return fit


def _via_t1w(wf, config, spaces, device, inputnode, fit):
    """BOLD reference -> T1w (rigid, MI); each template reached through the T1w's own normalisation."""
    # multi-start: from single starts the rigid MI has optima ~12 mm apart on ds-xa30
    # (bids-boldsr-bench coreg); sloppy (tests) keeps the single start
    coreg = pe.Node(RegisterLinear(dof=6, cost="mi", device=device, sloppy=config.sloppy,
                                   seed=config.random_seed, n_starts=1 if config.sloppy else COREG_STARTS),
                    name="coreg", mem_gb=2.0, n_procs=config.omp_nthreads)
    wf.connect([(fit.sr_ref, coreg, [("out_file", "moving_file")]),
                (inputnode, coreg, [("t1w_file", "fixed_file"), ("t1w_mask", "fixed_mask_file")])])
    fit.t1w_chain = (coreg, "xfm_file")
    fit.coregistrations.append((coreg, "T1w", {}))
    for target in spaces.targets:
        key = node_safe(target.key)
        chain = pe.Node(niu.Merge(2), name=f"chain_{key}")  # template -> T1w -> boldref
        inverse = pe.Node(niu.Merge(2), name=f"inverse_chain_{key}")  # boldref -> T1w -> template
        wf.connect([(inputnode, chain, [(f"t1w_to_{key}_xfm", "in1")]), (coreg, chain, [("xfm_file", "in2")]),
                    (coreg, inverse, [("inverse_xfm_file", "in1")]),
                    (inputnode, inverse, [(f"{key}_to_t1w_xfm", "in2")])])
        fit.chains[target.key] = ((chain, "out"), (inverse, "out"))


def _to_templates(wf, config, spaces, device, fit):
    """No T1w: the BOLD reference registered (affine, MI) to each template's own image and mask.
    No diffeomorphic stage: on ds-forrest a warp of the EPI reference stretched the clipped slab
    over the missing cerebellum (docs/benchmarks-registration.md)."""
    requested = {s.target.key for s in spaces.templates}
    for target in spaces.targets:
        key = node_safe(target.key)
        coreg = pe.Node(RegisterLinear(dof=12, cost="mi", fixed_file=str(target.t1w),
                                       fixed_mask_file=str(target.mask), device=device,
                                       sloppy=config.sloppy, seed=config.random_seed),
                        name=f"boldref_to_{key}", mem_gb=2.0)
        wf.connect(fit.sr_ref, "out_file", coreg, "moving_file")
        fit.chains[target.key] = ((coreg, "xfm_file"), (coreg, "inverse_xfm_file"))
        if target.key in requested:
            fit.coregistrations.append((coreg, target.name, target.entities))
