"""Every computing step runs with the CPU threads its node declares (n_procs), not one per core."""
import torch
from nipype.interfaces.base import TraitedSpec, traits
from nipype.pipeline import engine as pe

from bids_boldsr.interfaces.base import ThreadLimited, ThreadsInputSpec


class _SeenOutputSpec(TraitedSpec):
    torch_threads = traits.Int()
    blas_threads = traits.Int()


class _ThreadsSeen(ThreadLimited):
    input_spec = ThreadsInputSpec
    output_spec = _SeenOutputSpec

    def _run_interface(self, runtime):
        from threadpoolctl import threadpool_info

        self._results["torch_threads"] = torch.get_num_threads()
        self._results["blas_threads"] = max([p["num_threads"] for p in threadpool_info()] or [1])
        return runtime


def test_a_step_uses_its_declared_threads_and_gives_the_callers_back(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        node = pe.Node(_ThreadsSeen(), name="one", base_dir=str(tmp_path))  # n_procs not set: 1
        out = node.run().outputs
        assert node.n_procs == 1 and out.torch_threads == 1 and out.blas_threads == 1
        assert torch.get_num_threads() == 2  # restored for the caller
        node = pe.Node(_ThreadsSeen(), name="two", base_dir=str(tmp_path), n_procs=2)
        assert node.inputs.num_threads == 2 and node.run().outputs.torch_threads == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_every_computing_interface_is_thread_limited():
    """The steps that compute (all but the derivatives sink) declare their threads."""
    import inspect

    from bids_boldsr.interfaces import bold, outputs, registration, reports, segmentation, sr

    classes = [c for m in (bold, outputs, registration, reports, segmentation, sr)
               for _, c in inspect.getmembers(m, inspect.isclass)
               if c.__module__ == m.__name__ and hasattr(c, "_run_interface") and hasattr(c, "input_spec")]
    assert len(classes) >= 15
    unlimited = [c.__name__ for c in classes if not issubclass(c, ThreadLimited)]
    assert unlimited == ["DerivativesSink"]
    assert all("num_threads" in c.input_spec().trait_names() for c in classes if issubclass(c, ThreadLimited))


def test_bench_threads_times_the_four_arrangements(tmp_path):
    import json

    from bids_boldsr.bench import main as bench

    out = tmp_path / "threads.json"
    assert bench(["threads", "--iters", "1", "--shape", "12", "14", "10", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["processes"], r["threads_each"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert [len(r["s_per_iteration"]) for r in rows] == [1, 1, 2, 2]
    assert all(t > 0 for r in rows for t in r["s_per_iteration"])


def test_default_threads_per_heavy_step_follow_fmriprep():
    from bids_boldsr.config import default_omp_nthreads

    assert [default_omp_nthreads(n) for n in (1, 2, 3, 4, 8, 16, 64)] == [1, 1, 2, 3, 7, 8, 8]


def test_bench_threads_and_pipeline_refuse_non_positive_counts(capsys):
    """A count of 0 or less is a one-line usage error (argparse's exit 2), before anything runs."""
    import pytest

    from bids_boldsr.bench import main as bench

    for argv in (["threads", "--iters", "0"], ["pipeline", "ds-xa30", "--volumes", "-3"]):
        with pytest.raises(SystemExit) as stop:
            bench(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].endswith(("'0'", "'-3'")), err
