"""Methods section: the citation boilerplate of the settings that ran, its references and the
software versions."""
from __future__ import annotations

import platform
from importlib import metadata

# citation key as it appears in the boilerplate -> full reference
REFERENCES = {
    "Power et al., 2012": "Power JD, Barnes KA, Snyder AZ, Schlaggar BL, Petersen SE (2012). Spurious but "
                          "systematic correlations in functional connectivity MRI networks arise from subject "
                          "motion. NeuroImage 59(3):2142-2154. doi:10.1016/j.neuroimage.2011.10.018",
    "Fonov et al., 2009": "Fonov VS, Evans AC, McKinstry RC, Almli CR, Collins DL (2009). Unbiased nonlinear "
                          "average age-appropriate brain templates from birth to adulthood. NeuroImage 47:S102. "
                          "doi:10.1016/S1053-8119(09)70884-5",
    "Fonov et al., 2009, 2011": "Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL (2011). Unbiased average "
            "age-appropriate atlases for pediatric studies. NeuroImage 54(1):313-327. "
            "doi:10.1016/j.neuroimage.2010.07.033",
    "Diedrichsen et al., 2009": "Diedrichsen J, Balsters JH, Flavell J, Cussans E, Ramnani N (2009). A "
                                "probabilistic MR atlas of the human cerebellum. NeuroImage 46(1):39-46. "
                                "doi:10.1016/j.neuroimage.2009.01.045",
    "Tzourio-Mazoyer et al., 2002": "Tzourio-Mazoyer N, et al. (2002). Automated anatomical labeling of "
                                    "activations in SPM using a macroscopic anatomical parcellation of the MNI "
                                    "MRI single-subject brain. NeuroImage 15(1):273-289. doi:10.1006/nimg.2001.0978",
    "Billot et al., 2023": "Billot B, Greve DN, Puonti O, et al. (2023). SynthSeg: segmentation of brain MRI "
                           "scans of any contrast and resolution without retraining. Medical Image Analysis "
                           "86:102789. doi:10.1016/j.media.2023.102789",
    "Nipype": "Gorgolewski K, et al. (2011). Nipype: a flexible, lightweight and extensible neuroimaging data "
              "processing framework in Python. Front. Neuroinform. 5:13. doi:10.3389/fninf.2011.00013",
    "pybids": "Yarkoni T, et al. (2019). PyBIDS: Python tools for BIDS datasets. JOSS 4(40):1294. "
              "doi:10.21105/joss.01294",
    "PyTorch": "Paszke A, et al. (2019). PyTorch: an imperative style, high-performance deep learning "
               "library. NeurIPS 32.",
    "nilearn": "Abraham A, et al. (2014). Machine learning for neuroimaging with scikit-learn. Front. "
               "Neuroinform. 8:14. doi:10.3389/fninf.2014.00014",
    "TemplateFlow": "Ciric R, et al. (2022). TemplateFlow: FAIR-sharing of multi-scale, multi-species brain "
                    "models. Nature Methods 19:1568-1571. doi:10.1038/s41592-022-01681-2",
}

PACKAGES = ("bids-boldsr", "torch", "nipype", "pybids", "nibabel", "nilearn", "numpy", "scipy",
            "templateflow", "nitransforms", "matplotlib", "jinja2")


def references(text: str) -> list[str]:
    """The references cited in ``text``, in citation order."""
    found = [(text.find(key), ref) for key, ref in REFERENCES.items() if key in text]
    return [ref for _, ref in sorted(found, key=lambda hit: hit[0])]


def versions(run_version: str | None = None, sidecar: dict | None = None) -> list[tuple[str, str]]:
    """(software, version): the version that processed the data (saved settings, SR sidecar), then
    the packages installed where the report was written."""
    rows = []
    if run_version:
        rows.append(("bids-boldsr (processing)", run_version))
    if sidecar and sidecar.get("TorchVersion"):
        rows.append(("torch (super-resolution)", sidecar["TorchVersion"]))
    rows.append(("python (report)", platform.python_version()))
    for name in PACKAGES:
        try:
            rows.append((f"{name} (report)", metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return rows
