"""Every node that computes on the GPU declares itself to MultiProc, so ``--n-gpu-procs`` bounds them
all: a node whose interface has a ``device`` input set to CUDA gets ``use_gpu = True`` (nipype's
``Node.is_gpu_node``). Applied once to the finished graph: a new GPU node cannot be forgotten."""
from __future__ import annotations


def declare_gpu_nodes(wf) -> list[str]:
    """Set ``use_gpu`` on the CUDA nodes of ``wf`` (all levels); returns their full names.
    Raises ``TypeError`` for a CUDA node whose interface has no ``use_gpu`` input."""
    names = []
    for node in wf._get_all_nodes():
        inputs = node.inputs
        device = getattr(inputs, "device", None)
        if not isinstance(device, str) or not device.startswith("cuda"):
            continue
        if "use_gpu" not in inputs.trait_names():
            raise TypeError(f"{node.fullname}: a CUDA node without a use_gpu input")
        inputs.use_gpu = True
        names.append(node.fullname)
    return names
