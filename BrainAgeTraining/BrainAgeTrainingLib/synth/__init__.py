"""Synthetic ageing cohorts (``brainage synth``): real heads (:mod:`.anatomy`), ageing with a ground-truth
ageing map (:mod:`.ageing`), scanner and protocol (:mod:`.scanner`), cohorts written as BIDS (:mod:`.cohort`),
and a picture of the ageing (:mod:`.montage`)."""
