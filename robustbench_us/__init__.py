"""robustbench_us: does an invisible perturbation change a breast-ultrasound diagnosis, or its heatmap?"""

from robustbench_us.hookspecs import hookimpl
from robustbench_us.specs import AttackSpec, AttackTarget, DatasetSpec, ExplainerSpec, Kind, ModelSpec, Norm

__version__ = "0.1.0"
__all__ = ["hookimpl", "AttackSpec", "AttackTarget", "DatasetSpec", "ExplainerSpec", "Kind", "ModelSpec", "Norm",
           "__version__"]
