"""Slicer-free training companion of SlicerBrainAge: datasets, synthetic clinical slicing, splits,
training, evaluation and cohort statistics, and synthetic ageing cohorts built from real heads
(``synth_*`` modules, command ``brainage synth``)."""
