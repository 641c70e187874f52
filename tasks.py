"""invoke tasks: `invoke --list`; `invoke --help TASK`.

Each task forwards to one function of gpuimages/commands.py. `command` (gpuimages/cli.py)
gives it the shared options (a selecting task's variant axes, --all, --variant, --matrix,
parsed once into a `Selection`), every option's help (gpuimages/core/options.py) and the
error handling: a user error is one paragraph and an exit code.
"""

from __future__ import annotations

from gpuimages import commands
from gpuimages.cli import command, quiet_broken_pipe
from gpuimages.core.options import AXES

quiet_broken_pipe()

matrix = command()(commands.matrix)
check = command(selects="request")(commands.check)
render = command()(commands.render)
build = command(selects="many")(commands.build)
wheelhouse = command(selects="many")(commands.wheelhouse)
tag = command(selects="many", iterable=["alias"])(commands.tag)
smoke = command(selects="many")(commands.smoke)
publish = command(selects="many")(commands.publish)
doctor_task = command(name="doctor", selects="everything")(commands.doctor)
resolve_task = command(name="resolve", iterable=["gpu_arch", "catalog"])(commands.resolve)
run_task = command(name="run", selects="one")(commands.run)
launch_task = command(
    name="launch",
    selects="one",
    axes=[a for a in AXES if a != "horovod"],  # --horovod here asks for a Horovod job
)(commands.launch)
compat_task = command(name="compat", positional=["action"])(commands.compat)
promote_task = command(name="promote", iterable=["variant", "manifest"])(commands.promote)
