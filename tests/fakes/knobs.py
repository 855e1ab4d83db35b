"""A fake plugin whose factories show every way an option can be declared (for ``robustbench-us list``)."""

from robustbench_us import AttackSpec, hookimpl


def make_knobs(*, eps: float = 1 / 255, steps: int, mode: str = "fast", scale: float | None = None, **extra):
    """An attack with a required option, defaults, and extra options passed through."""
    return None


def make_plain(*, eps: float = 1 / 255):
    """An attack with no options at all."""
    return None


@hookimpl
def register_attacks(register):
    # The declared steps=99 disagrees with the signature, which wins; verbose is only declared.
    register(AttackSpec(name="knobs", factory=make_knobs, options={"steps": 99, "verbose": False}))
    register(AttackSpec(name="plain", factory=make_plain))
