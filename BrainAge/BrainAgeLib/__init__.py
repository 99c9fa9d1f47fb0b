"""BrainAgeLib: Slicer-free core of SlicerBrainAge.

Predicts brain age from routine clinical 2D axial T1 MRI after Kim et al. 2025
(npj Aging). Never imports slicer, qt, ctk or vtk.
"""

__version__ = "0.1.0"
