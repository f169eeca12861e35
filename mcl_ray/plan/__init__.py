"""The stage plan: the MCL stage sequence written once, without Ray, and run by an executor.

`sequence.run_stages` decides, for every stage, its content key, whether an earlier run already built it,
and what to evaluate and publish; an executor (`local.LocalExecutor` in this process, the Ray engine's
`RayExecutor` as a Ray Train job plus a clustering actor) only builds the stages the plan asks for. Both
write the same artifact layout, so a `--local` run and a Ray run of one experiment reuse each other's stages.
"""
