"""A fake plugin that registers an attack named 'fgsm', clashing with the reference plugin."""

from robustbench_us import AttackSpec, hookimpl


def make(*, eps: float = 0.0):
    """Does nothing; exists to clash."""
    return None


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="fgsm", factory=make))
