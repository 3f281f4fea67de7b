"""--n-gpu-procs: every node computing on CUDA is a GPU node for MultiProc (built, not run). The whole
graph takes 1-4 min to build here: ``python -m pytest -q -m slow tests/test_gpu_nodes.py``."""
import nibabel as nib
import pytest
import numpy as np

from bids_boldsr import bids
from bids_boldsr.config import Config
from bids_boldsr.spaces import resolve
from bids_boldsr.workflows.base import init_bids_boldsr_wf
from conftest import make_bids


def _graph(tmp_path, template_cache, device):
    rng = np.random.default_rng(0)
    bold = nib.Nifti1Image(rng.normal(500, 5, (8, 8, 6, 4)).astype(np.float32), np.diag([3, 3, 3, 1.0]))
    t1w = nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4))
    ds = make_bids(tmp_path / "ds", bold, t1w)
    cfg = Config.create(bids_dir=ds, output_dir=tmp_path / "out", work_dir=template_cache,
                        analysis_level="participant", output_spaces=("bold", "T1w", "MNI152NLin2009aSym"),
                        sloppy=True)
    data = {"01": bids.collect_data(bids.load_layout(cfg.bids_dir, tmp_path / "w"), "01")}
    spaces = resolve(cfg.output_spaces, cfg.work_dir, cfg.sloppy, cfg.cerebellar_atlas)
    wf = init_bids_boldsr_wf(cfg, data, spaces, device, {"01": cfg.to_json(tmp_path / "c.json")})
    return {n.fullname.split(".", 1)[1]: n for n in wf._create_flat_graph().nodes()}


@pytest.mark.slow
def test_every_cuda_node_is_a_gpu_node(tmp_path, template_cache):
    nodes = _graph(tmp_path, template_cache, "cuda")
    gpu = {name.rsplit(".", 1)[-1] for name, n in nodes.items() if n.is_gpu_node()}
    for stage in ("hmc", "coreg", "sr_boldref", "super_resolve", "sr_train", "to_MNI152NLin2009aSym",
                  "to_T1w", "t1w_to_MNI152NLin2009aSym", "t1w_to_MNI152NLin2009aSym_nonlinear"):
        assert stage in gpu, (stage, sorted(gpu))
    on_cuda = [n for n in nodes.values() if getattr(n.inputs, "device", None) == "cuda"]
    assert on_cuda and all(n.is_gpu_node() for n in on_cuda)
    assert not nodes["sub_01_wf.bold_sub_01_task_rest_wf.boldref"].is_gpu_node()  # numpy only
    res = nodes["sub_01_wf.bold_sub_01_task_rest_wf.to_MNI152NLin2009aSym"]
    assert res.n_procs >= 1 and res.inputs.num_threads == res.n_procs  # the resampling takes --nprocs


def test_every_device_interface_can_declare_the_gpu():
    import inspect

    from nipype.interfaces.base import BaseInterface

    from bids_boldsr.interfaces import bold, registration, segmentation, sr

    classes = [c for m in (bold, registration, segmentation, sr) for _, c in inspect.getmembers(m, inspect.isclass)
               if issubclass(c, BaseInterface) and c.__module__ == m.__name__ and c.input_spec is not None]
    with_device = [c for c in classes if "device" in c.input_spec().trait_names()]
    names = {c.__name__ for c in with_device}
    assert {"HeadMotion", "RegisterLinear", "SuperResolve", "SuperResolveReference", "ResampleSeries"} <= names
    assert all("use_gpu" in c.input_spec().trait_names() for c in with_device), names


def test_declare_gpu_nodes_cpu_and_missing_trait():
    from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, traits
    from nipype.pipeline import engine as pe

    from bids_boldsr.interfaces.bold import HeadMotion
    from bids_boldsr.workflows.gpu import declare_gpu_nodes

    wf = pe.Workflow(name="w")
    wf.add_nodes([pe.Node(HeadMotion(device="cpu"), name="hmc")])
    assert declare_gpu_nodes(wf) == [] and not wf.get_node("hmc").is_gpu_node()

    class _Spec(BaseInterfaceInputSpec):
        device = traits.Str("cuda", usedefault=True)

    class NoDeclaration(SimpleInterface):
        input_spec, output_spec = _Spec, None

    wf.add_nodes([pe.Node(NoDeclaration(), name="forgot")])
    with pytest.raises(TypeError, match="without a use_gpu input"):
        declare_gpu_nodes(wf)
