"""A fake plugin with a model family 'toy:*' and an explainer."""

from robustbench_us import ExplainerSpec, ModelSpec, hookimpl


def make_toy(*, variant: str, input_size: int = 32):
    """A toy model family; returns its variant for the test."""
    return {"variant": variant, "input_size": input_size}


class Flat:
    differentiable = False

    def explain(self, model, x, target, *, create_graph=False):
        return x.mean(dim=1)


def make_flat():
    """Channel mean as a heatmap (a fake explainer)."""
    return Flat()


@hookimpl
def register_models(register):
    register(ModelSpec(name="toy:*", factory=make_toy, input_size=32))


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="flat", factory=make_flat))
