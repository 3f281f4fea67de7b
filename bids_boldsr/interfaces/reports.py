"""Report interface: the participant's QC table (the pages are built from the outputs on disk
after the workflow, ``bids_boldsr.reports.participant``, also by ``--reports-only``)."""
import json
from pathlib import Path

from nipype.interfaces.base import File, InputMultiObject, TraitedSpec, traits

from .base import ThreadLimited, ThreadsInputSpec


class _ParticipantReportInputSpec(ThreadsInputSpec):
    output_dir = traits.Str(mandatory=True)
    subject = traits.Str(mandatory=True)
    qc_files = InputMultiObject(File(exists=True), mandatory=True)


class _ParticipantReportOutputSpec(TraitedSpec):
    qc_tsv = traits.Str()


class ParticipantReport(ThreadLimited):
    """QC table ``sub-X/sub-X_qc.tsv`` (one row per run; lists as JSON text), the only input of
    the group level."""

    input_spec = _ParticipantReportInputSpec
    output_spec = _ParticipantReportOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        import pandas as pd

        from ..atomic import atomic_write_text

        out = Path(self.inputs.output_dir)
        sub = self.inputs.subject
        runs = [json.loads(Path(f).read_text()) for f in self.inputs.qc_files]
        table = pd.DataFrame([{k: (json.dumps(v) if isinstance(v, list) else v)
                               for k, v in r.items()} for r in runs])
        tsv = atomic_write_text(out / f"sub-{sub}" / f"sub-{sub}_qc.tsv",
                                table.to_csv(sep="\t", index=False, na_rep="n/a"))
        self._results["qc_tsv"] = str(tsv)
        return runtime
