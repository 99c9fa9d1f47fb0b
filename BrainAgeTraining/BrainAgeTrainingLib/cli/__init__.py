"""The training side's ``brainage`` sub-commands: ``synth``, ``train`` and ``evaluate`` (registered by
:mod:`BrainAgeLib.cli`)."""
