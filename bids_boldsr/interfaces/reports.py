"""Report interfaces: per-run figures and the participant page."""
import json
from pathlib import Path

from nipype.interfaces.base import (BaseInterfaceInputSpec, File, InputMultiObject,
                                    SimpleInterface, TraitedSpec, traits)


class _RunFiguresInputSpec(BaseInterfaceInputSpec):
    run_name = traits.Str(mandatory=True)
    sr_file = File(exists=True, mandatory=True)
    dseg_file = File(exists=True)
    tissue_file = File(exists=True, desc="learned cerebellum, outlined on the label figure")
    confounds_file = File(exists=True)
    template_bold_file = File(exists=True)
    template_mask_file = File(exists=True)
    template_name = traits.Str("")


class _RunFiguresOutputSpec(TraitedSpec):
    figures = traits.List(File(exists=True))


class RunFigures(SimpleInterface):
    input_spec = _RunFiguresInputSpec
    output_spec = _RunFiguresOutputSpec

    def _run_interface(self, runtime):
        from ..reports import figures as fig

        cwd, name, out = Path(runtime.cwd), self.inputs.run_name, []
        space = self.inputs.template_name
        if self.inputs.template_bold_file and self.inputs.template_mask_file:
            out.append(fig.template_alignment(
                self.inputs.template_bold_file, None, self.inputs.template_mask_file,
                cwd / f"{name}_space-{space}_desc-alignment_bold.png",
                f"{name}: mean BOLD in {space}, {space} brain outline (red)"))
        if self.inputs.dseg_file:
            out.append(fig.cerebellum_overlay(self.inputs.sr_file, self.inputs.dseg_file,
                                              cwd / f"{name}_desc-cerebellum_dseg.png",
                                              f"{name}: cerebellar labels on mean SR BOLD"
                                              + (" (white: learned cerebellum)" if self.inputs.tissue_file else ""),
                                              self.inputs.tissue_file or None))
        if self.inputs.confounds_file:
            out.append(fig.motion_plot(self.inputs.confounds_file, cwd / f"{name}_desc-motion_bold.png",
                                       f"{name}: head motion"))
        self._results["figures"] = [str(p) for p in out]
        return runtime


class _ParticipantReportInputSpec(BaseInterfaceInputSpec):
    output_dir = traits.Str(mandatory=True)
    subject = traits.Str(mandatory=True)
    qc_files = InputMultiObject(File(exists=True), mandatory=True)
    figures = traits.List(traits.List(File(exists=True)), desc="per run, in qc_files order")
    config_file = File(exists=True, mandatory=True)
    boilerplate = traits.Str("")


class _ParticipantReportOutputSpec(TraitedSpec):
    report_file = traits.Str()
    qc_tsv = traits.Str()


class ParticipantReport(SimpleInterface):
    """Figures into ``sub-X/figures/``, QC table ``sub-X/sub-X_qc.tsv``, page ``sub-X.html``."""

    input_spec = _ParticipantReportInputSpec
    output_spec = _ParticipantReportOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        import pandas as pd

        from ..atomic import atomic_copy, atomic_write_text
        from ..reports.html import participant_report

        out = Path(self.inputs.output_dir)
        sub = self.inputs.subject
        figdir = out / f"sub-{sub}" / "figures"
        runs = [json.loads(Path(f).read_text()) for f in self.inputs.qc_files]
        figures = {}
        for run, figs in zip(runs, self.inputs.figures or [[]] * len(runs)):
            figures[run["run"]] = [atomic_copy(f, figdir / Path(f).name) for f in figs]
        table = pd.DataFrame([{k: (json.dumps(v) if isinstance(v, list) else v)
                               for k, v in r.items()} for r in runs])
        tsv = atomic_write_text(out / f"sub-{sub}" / f"sub-{sub}_qc.tsv",
                                table.to_csv(sep="\t", index=False, na_rep="n/a"))
        config = json.loads(Path(self.inputs.config_file).read_text())
        report = participant_report(out, sub, self.inputs.qc_files, figures, config,
                                    self.inputs.boilerplate)
        self._results["report_file"] = str(report)
        self._results["qc_tsv"] = str(tsv)
        return runtime
