"""A fake plugin whose hook name is misspelt: the host must refuse it."""

from robustbench_us import hookimpl


@hookimpl
def register_attack(register):  # missing the final 's'
    pass
